"""An adapter whose 'framework' starts a thread when imported, as some native libraries do: a
process holding it must not be forked (the fork server declines and its pool spawns workers)."""

from __future__ import annotations

import threading
import time

from tests.adapters.numpy_direct import DirectNumpy

threading.Thread(target=time.sleep, args=(3600,), daemon=True, name="framework-pool").start()


class StartsThreadAtImport(DirectNumpy):
    name = "starts-thread-at-import"
