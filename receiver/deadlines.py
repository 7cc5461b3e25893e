"""Deadlines for many waiting tasks, with one timer per event loop.

`asyncio.timeout()` schedules and cancels a timer per use; the body deadline of every
request (receiver/bodies.py) made that one timer per request. Here each loop keeps its
waiting tasks in order of deadline (they all get the same number of seconds, so that is
the order they started in) and one timer for the earliest: it fires about once per
`seconds` under load, cancels the tasks whose deadline has passed, and sets itself for the
next one. A task leaving in time costs a dict insert and a delete.

A task cancelled this way sees CancelledError at the await it was waiting on; `expired()`
tells that apart from any other cancellation, as `asyncio.timeout()` does.
"""

from __future__ import annotations

import asyncio


class Deadlines:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        # A server has one loop (tests start a few): a plain dict, and the last one at hand.
        self._loops: dict[asyncio.AbstractEventLoop, _LoopDeadlines] = {}
        self._last: _LoopDeadlines | None = None

    def _of(self, loop: asyncio.AbstractEventLoop) -> _LoopDeadlines:
        last = self._last
        if last is None or last.loop is not loop:
            last = self._last = self._loops.get(loop) or self._loops.setdefault(
                loop, _LoopDeadlines(loop, self.seconds)
            )
        return last

    def start(self, task: asyncio.Task[object]) -> None:
        """`task` is cancelled if it has not called `stop` within `seconds`."""
        self._of(task.get_loop()).start(task)

    def stop(self, task: asyncio.Task[object]) -> bool:
        """Forget `task`'s deadline. True when it had passed and this class cancelled the task;
        then its cancellation is withdrawn (uncancel), and the caller raises its own error."""
        return self._of(task.get_loop()).stop(task)


class _LoopDeadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = self._loop = loop
        self._seconds = seconds
        self._waiting: dict[asyncio.Task[object], float] = {}  # insertion order is deadline order
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[object]) -> None:
        deadline = self._loop.time() + self._seconds
        self._waiting[task] = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._fire)

    def stop(self, task: asyncio.Task[object]) -> bool:
        if self._waiting.pop(task, None) is not None:
            return False
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._waiting:
            task, deadline = next(iter(self._waiting.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._fire)
                return
            del self._waiting[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
