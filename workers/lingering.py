"""A runner that waits a little for more before it ends (workers/batches.py, `run_pending`).

Under a steady stream, the next event often comes a few milliseconds after a batch went out.
Ending the job then would leave that event to a new RQ job (about 12 ms of round trips, more
under load); waiting up to `workers.batches.LINGER_SECONDS` for it, as the URL's waiting runner
(workers/pending.py), spares that, and costs nothing when another URL's job needs the worker:
that ends the wait at once.
"""

from __future__ import annotations

import time

import redis
from rq import Queue

from workers import pending

# KEYS: the URL's runner key, its pending list. ARGV: this runner's job id. The runner stops waiting:
# it is no longer the URL's waiting runner, and learns whether an entry came in the meantime.
_STOP_WAITING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('LLEN', KEYS[2])
"""
WAIT_SLICE = 0.01  # seconds a lingering runner blocks before it looks at the queue again


def linger(connection: redis.Redis, queue: Queue, url: str, job_id: str, seconds: float) -> bool:
    """Wait up to `seconds` for an entry to be pending for `url`, while no job other than the URL's
    own runners waits in `queue` for this worker. Meanwhile it stands as the URL's waiting runner,
    unless one is queued already, so that the dispatcher queues none for what comes. True when an
    entry is pending (the caller takes again); False when the wait ended without one, the URL being
    then free for the dispatcher to queue a new runner.

    Under a steady stream this spares each event that comes just after a batch the start of a new
    RQ job (about 12 ms of round trips, more under load); another URL's job ends it at once. A runner
    queued for the same URL meanwhile does not: it would start only to find nothing, later."""
    # Named for the wait and a second more, not RUNNER_TTL: if this worker dies meanwhile, the URL
    # must not wait for the crash to be noticed before the dispatcher queues it a runner again.
    named = connection.set(pending.runner(url), job_id, nx=True, px=int(seconds * 1000) + 1000)
    ours = pending.runner_prefix(url).encode()
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        # A list moved onto itself, head to head: a blocking peek that changes nothing. (Redis takes
        # fractions of a second here; redis-py's stub says int.)
        wait = min(WAIT_SLICE, left)
        if connection.blmove(pending.pending(url), pending.pending(url), wait, "LEFT", "LEFT") is not None:  # type: ignore[arg-type]
            return True  # if named the URL's runner, taking clears that (pending's _TAKE)
        waiting: list[bytes] = connection.lrange(queue.key, 0, 3)  # type: ignore[assignment]
        if any(not job.startswith(ours) for job in waiting):
            break
    if not named:
        return bool(connection.llen(pending.pending(url)))
    stop = connection.register_script(_STOP_WAITING)
    return bool(stop(keys=[pending.runner(url), pending.pending(url)], args=[job_id]))
