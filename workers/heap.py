"""The garbage collector in a long-running process.

A full collection walks every object the process tracks, and most of them (modules,
classes, the libraries' tables, our settings and clients) are made at start and live
as long as the process. `settle()`, called once a process has started, moves them out
of the collector's sight (`gc.freeze`), so that a full collection walks only what was
made since. In the receiver under load, its full collection went from 17 ms, during
which no request moved, to 0.4 ms (docs/performance.md).
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect what start-up left behind, then freeze what is left; returns how many objects
    are frozen. Never raises."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
