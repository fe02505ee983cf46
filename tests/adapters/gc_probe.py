"""An adapter that notes whether Python's cyclic garbage collector ran while it was imported and
runs in the worker: a fork server imports frameworks without collections (their objects all live
on), and the workers it forks collect as any process does; and one that notes whether the modules
it declares (``Adapter.preload_modules``) were imported before its worker began."""

from __future__ import annotations

import gc
import sys

from tests.adapters.numpy_direct import DirectNumpy

COLLECTING_AT_IMPORT = gc.isenabled()


class NotesCollections(DirectNumpy):
    name = "notes-collections"

    def build_facts(self) -> dict:
        return {"collecting_at_import": COLLECTING_AT_IMPORT, "collecting_in_worker": gc.isenabled()}


class NotesPreloaded(DirectNumpy):
    """Declares a module its framework would import lazily (a standard one nothing else here
    imports): a fork server imports it once, before its workers are forked from it."""

    name = "notes-preloaded"
    preload_modules = ("colorsys",)

    def build_facts(self) -> dict:
        return {"preloaded": "colorsys" in sys.modules}
