"""An adapter that notes whether Python's cyclic garbage collector ran while it was imported and
runs in the worker: a fork server imports frameworks without collections (their objects all live
on), and the workers it forks collect as any process does."""

from __future__ import annotations

import gc

from tests.adapters.numpy_direct import DirectNumpy

COLLECTING_AT_IMPORT = gc.isenabled()


class NotesCollections(DirectNumpy):
    name = "notes-collections"

    def build_facts(self) -> dict:
        return {"collecting_at_import": COLLECTING_AT_IMPORT, "collecting_in_worker": gc.isenabled()}
