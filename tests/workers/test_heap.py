"""workers/heap.py: start-up objects are taken out of the collector's walks, in both kinds of process."""

from __future__ import annotations

import gc
import json

from tests.conftest import WorkerProcess, running_receiver
from workers import heap
from workers.settings import Settings


def _tracked(thing: object) -> bool:
    """True when a collection would walk `thing` (frozen objects are in no generation)."""
    return any(candidate is thing for candidate in gc.get_objects())


def test_settle_freezes_what_lives_and_leaves_what_comes_after() -> None:
    kept: list[object] = [object()]
    try:
        frozen = heap.settle()
        assert frozen == gc.get_freeze_count() > 0
        assert not _tracked(kept)
        made_after: list[object] = [object()]
        assert _tracked(made_after)
    finally:
        gc.unfreeze()
    assert _tracked(kept)


def test_the_receiver_settles_once_started(settings: Settings) -> None:
    gc.unfreeze()
    kept: list[object] = [object()]
    try:
        assert _tracked(kept)
        with running_receiver(settings):  # uvicorn in a thread of this process: its lifespan runs here
            assert not _tracked(kept)
    finally:
        gc.unfreeze()


def test_the_worker_settles_before_it_works(worker: WorkerProcess) -> None:
    worker.wait_for_log('"worker.started"')
    started = next(json.loads(line) for line in worker.logs().splitlines() if '"worker.started"' in line)
    assert started["frozen_objects"] > 10_000  # modules, classes and clients: far more than a few
