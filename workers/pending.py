"""Per-callback-URL pending lists: a backlog waits here, so that it leaves in full batches.

The dispatcher appends each event for a callback URL to that URL's pending list
and makes sure that one runner job for the URL is waiting to start. A runner
(`workers.batches.run_pending`) takes up to a batch of entries when it *starts*,
not when it was queued: what accumulated while the URL's earlier runners were
busy leaves as one batch, and a lone event still goes out at once; a runner whose
batch went out cleanly takes again what came meanwhile, within its time budget. Runners are
RQ jobs under the URL's `RateLimit`, so the per-URL concurrency limit counts
batches in flight. (Making one job per event, or per dispatcher take, instead
paid RQ's ~45 commands per job for batches of one or two at a steady rate: see
docs/performance.md.)

Keys, per callback URL (`url` is `keys.endpoint_limit` of it):

* `relay:url:{url}:pending`: entries "<instance id> <inbox item>", oldest first;
* `relay:url:{url}:runner`: the id of the runner waiting to start, if any (with a
  TTL, so that a runner job lost by hand, `rq empty` say, cannot stall the URL);
* `relay:runner:{job id}:taken`: what a started runner took and has not finished;
* `relay:runner:{job id}:crashes`: how often its worker died with that (TTL 1 day);
* `relay:runner:{job id}:answered`: the attempts it has had answered so far, noted in one write
  at most every `workers.batches.NOTE_EVERY_MS` (at once when the URL is slow);
* `relay:urls:pending` (a set): URLs that had entries lately, for the backlog metrics;
* `relay:url:{url}:undecided` (a set): the jobs a runner handed failures to (workers/batches.py)
  that have not decided on them yet. While it has members the URL's runners take nothing and
  its runner key says "held", so that the dispatcher queues none: a failure is decided (retry
  scheduled, failed, paused) before the URL gets more. The last job to decide queues the next
  runner (`decided`). TTL RUNNER_TTL, so that a deciding job lost by hand holds the URL no longer.

Nothing is lost:

* appending, naming the waiting runner and queueing it are one MULTI under WATCH
  of the runner key: a runner that starts meanwhile clears the key, so the
  transaction fails and is tried again, and queues a new runner;
* a runner moves what it takes to its `taken` list in one script, and entries
  leave that list only in the transaction that records their outcomes or hands
  them to jobs of their own. RQ runs a runner whose worker died again (its crash
  retries), and it starts with what it had taken: it records those it noted as
  answered and sends the rest again as a batch after one crash and, after a
  second, hands each to a job of its own, so that an event that kills workers
  takes down two batches at most;
* a runner that leaves entries behind queues a successor, unless one waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.client import Pipeline
from rq import Queue

from workers import jobs, keys, lua
from workers.instances import Instance

RUNNER_TTL = 600  # seconds a runner may wait to start before another may be queued beside it
URLS = keys.PREFIX + "urls:pending"

# KEYS: pending, taken, runner, pace, crashes, undecided. ARGV: this runner's job id, most to take,
# budget ms, most to take at an unknown pace, seconds the URL stays held, HELD. Returns {entries, left,
# crashes, held}: what this runner delivers, how many entries are still pending, how many times a
# worker died running it with these entries (RQ runs it again with what it took before), and 1 when
# it takes nothing because a failure handed off earlier is not decided yet. It takes as many as the
# URL answered within the budget lately (the pace: ms per request of its last batch), so a slow
# endpoint gets small batches (and a URL whose pace is not known yet, a few).
_TAKE = """
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
if #entries > 0 then
  local crashes = redis.call('INCR', KEYS[5])
  redis.call('EXPIRE', KEYS[5], 86400)
  return {entries, redis.call('LLEN', KEYS[1]), crashes, 0}
end
if redis.call('SCARD', KEYS[6]) > 0 then
  redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[5])
  return {{}, redis.call('LLEN', KEYS[1]), 0, 1}
end
local most, pace = tonumber(ARGV[2]), tonumber(redis.call('GET', KEYS[4]) or '0')
if pace > 0 then
  most = math.max(1, math.min(most, math.floor(tonumber(ARGV[3]) / pace)))
else
  most = math.min(most, tonumber(ARGV[4]))
end
entries = redis.call('LRANGE', KEYS[1], 0, most - 1)
if #entries > 0 then
  redis.call('RPUSH', KEYS[2], unpack(entries))
  redis.call('LTRIM', KEYS[1], #entries, -1)
end
return {entries, redis.call('LLEN', KEYS[1]), 0, 0}
"""
PACE_TTL = 3600
# The runner key's value while the URL waits for a failure's decision, and for how long at most: a
# runner started after that takes nothing again if the decision is still to come.
HELD = "held"
HELD_SECONDS = 60
FIRST_TAKE = 10  # entries a runner takes for a URL whose pace is not known (new, or idle for PACE_TTL)


def pending(url: str) -> str:
    return f"{keys.PREFIX}url:{url}:pending"


def runner(url: str) -> str:
    return f"{keys.PREFIX}url:{url}:runner"


def pace(url: str) -> str:
    return f"{keys.PREFIX}url:{url}:pace"


def taken(job_id: str) -> str:
    return f"{keys.PREFIX}runner:{job_id}:taken"


def crashes(job_id: str) -> str:
    return f"{keys.PREFIX}runner:{job_id}:crashes"


def answered(job_id: str) -> str:
    return f"{keys.PREFIX}runner:{job_id}:answered"


def undecided(url: str) -> str:
    return f"{keys.PREFIX}url:{url}:undecided"


def entry(text: str, instance_id: int) -> str:
    return f"{instance_id} {text}"


def parse(raw: bytes | str) -> tuple[str, int]:
    """An entry's (inbox item, instance id)."""
    instance_id, text = (raw.decode() if isinstance(raw, bytes) else raw).split(" ", 1)
    return text, int(instance_id)


def runner_prefix(url: str) -> str:
    """What the job ids of `url`'s runners start with."""
    return f"run-{url.replace(':', '-')}-"


def runner_job_id(url: str) -> str:
    return runner_prefix(url) + uuid.uuid4().hex[:12]


def transaction(
    connection: redis.Redis, urls: set[str], fill: Callable[[Pipeline, set[str]], None], attempts: int = 20
) -> None:
    """Run `fill(pipe, idle)` in a MULTI under WATCH of the runner keys of `urls`, and execute it;
    `idle` are the URLs with no runner waiting, for which `fill` must queue one (`append`). Tries
    again when a runner started meanwhile. Raises redis.WatchError after `attempts` conflicts."""
    names = [runner(url) for url in sorted(urls)]
    for attempt in range(attempts):
        with connection.pipeline(transaction=True) as pipe:
            try:
                if names:
                    pipe.watch(*names)  # type: ignore[no-untyped-call]
                    waiting = pipe.mget(names)
                else:
                    waiting = []
                idle = {url for url, job in zip(sorted(urls), waiting, strict=True) if job is None}
                pipe.multi()
                fill(pipe, idle)
                pipe.execute()
                return
            except redis.WatchError:
                if attempt == attempts - 1:
                    raise


def append(pipe: Pipeline, queue: Queue, url: str, entries: list[str], limiter: Instance | None, *, idle: bool) -> None:
    """In `pipe` (a MULTI from `transaction`): add `entries` to the URL's pending list and, if no
    runner waits (`idle`), queue one under the URL's limit (`limiter`: an instance calling it)."""
    if entries:
        pipe.rpush(pending(url), *entries)
        pipe.sadd(URLS, url)
    if idle:
        job_id = runner_job_id(url)
        pipe.set(runner(url), job_id, ex=RUNNER_TTL)
        jobs.enqueue(queue, [jobs.runner_job(queue, url, limiter, job_id)], pipe)


@dataclass(frozen=True)
class Taken:
    entries: list[tuple[str, int]]  # (inbox item, instance id), in order
    left: int  # entries still pending for the URL
    crashes: int  # 0, or how often a worker died running this runner with these entries
    held: bool = False  # nothing taken: a failure handed off earlier is not decided yet


def take(connection: redis.Redis, url: str, job_id: str, most: int, budget: float) -> Taken:
    """What runner `job_id` delivers: the entries it took before (run again after a crash), or as
    many pending ones as the URL's pace lets it send in `budget` seconds (at most `most`), moved to
    its taken list."""
    script = connection.register_script(_TAKE)
    return read_taken(script(keys=_take_keys(url, job_id), args=_take_args(job_id, most, budget)))


def take_in(pipe: Pipeline, url: str, job_id: str, most: int, budget: float) -> None:
    """Queue a `take` in `pipe` (the runner's closing MULTI, after `finish`): the next batch is
    taken in the round trip that records this one. `read_taken` reads its reply from EXEC's."""
    lua.queue(pipe, _TAKE, _take_keys(url, job_id), _take_args(job_id, most, budget))


def read_taken(reply: list[Any]) -> Taken:
    entries, left, crashed, held = reply
    return Taken([parse(raw) for raw in entries], int(left), int(crashed), bool(held))


def _take_keys(url: str, job_id: str) -> list[str]:
    return [pending(url), taken(job_id), runner(url), pace(url), crashes(job_id), undecided(url)]


def _take_args(job_id: str, most: int, budget: float) -> list[str | int]:
    return [job_id, most, int(budget * 1000), FIRST_TAKE, HELD_SECONDS, HELD]


def finish(pipe: Pipeline, url: str, job_id: str, back: list[str], ms_per_request: float) -> None:
    """In `pipe` (the runner's closing MULTI): put `back` at the head of the pending list, in order;
    clear the runner's taken list; remember the URL's pace. The caller then ensures a runner if
    it gave anything back."""
    if back:
        pipe.lpush(pending(url), *reversed(back))
    pipe.delete(taken(job_id), crashes(job_id), answered(job_id))
    if ms_per_request > 0:
        pipe.set(pace(url), f"{ms_per_request:.3f}", ex=PACE_TTL)


def ensure_runner(connection: redis.Redis, queue: Queue, url: str, limiter: Instance | None) -> None:
    """Queue a runner for the URL if entries are pending and none waits to start."""

    def fill(pipe: Pipeline, idle: set[str]) -> None:
        if idle:
            append(pipe, queue, url, [], limiter, idle=True)

    if connection.llen(pending(url)):
        transaction(connection, {url}, fill)


def awaiting(pipe: Pipeline, url: str, job_ids: list[str]) -> None:
    """In `pipe` (the MULTI that queues them): the URL's runners take nothing until these jobs,
    each deciding on a failure handed off by a batch, have called `decided`."""
    if job_ids:
        pipe.sadd(undecided(url), *job_ids)
        pipe.expire(undecided(url), RUNNER_TTL)


# KEYS: the URL's undecided set, runner key, pending list. ARGV: the deciding job's id, HELD. The last
# to decide frees the URL: a held runner key is cleared, so that a runner can be queued.
_DECIDED = """
redis.call('SREM', KEYS[1], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
end
return redis.call('LLEN', KEYS[3])
"""


def decided(connection: redis.Redis, queue: Queue, url: str, job_id: str, limiter: Instance | None) -> None:
    """Job `job_id` has decided on the failure it was handed (`awaiting`): when it was the last the
    URL waited for, queue a runner for what is pending. Raises only when Redis fails."""
    script = connection.register_script(_DECIDED)
    if script(keys=[undecided(url), runner(url), pending(url)], args=[job_id, HELD]):
        ensure_runner(connection, queue, url, limiter)


def note_answered(connection: redis.Redis, job_id: str, noted: list[tuple[str, dict[str, Any]]]) -> None:
    """Note that runner `job_id` had these notifications answered, (id, the event log's attempt
    record) each, so that a run after its worker died records them instead of sending them again."""
    connection.rpush(answered(job_id), *(orjson.dumps(pair) for pair in noted))


def read_answered(connection: redis.Redis, job_id: str) -> dict[str, dict[str, Any]]:
    """What runner `job_id` noted as answered: notification id -> attempt record."""
    noted = connection.lrange(answered(job_id), 0, -1)
    return {webhook_id: attempt for webhook_id, attempt in map(orjson.loads, noted)}


def carried(connection: redis.Redis, job_id: str) -> list[tuple[str, int]]:
    """What a runner had taken and not finished (for the failure callback)."""
    return [parse(raw) for raw in connection.lrange(taken(job_id), 0, -1)]


# KEYS: the set of URLs, the URL's pending list. ARGV: the URL. Forget it if nothing is pending
# (the dispatcher adds it again with its next entry).
_FORGET = "if redis.call('LLEN', KEYS[2]) == 0 then return redis.call('SREM', KEYS[1], ARGV[1]) end return 0"


def sweep(connection: redis.Redis, queue: Queue) -> int:
    """Queue a runner for each URL with entries pending and no runner waiting, and forget URLs with
    nothing pending. Returns how many URLs needed a runner.

    Runners keep themselves going (a runner that dies is run again by RQ, and queues its successor);
    this covers what they cannot: a waiting runner's job removed by hand (`rq empty`, say), whose
    runner key would otherwise hold the URL for RUNNER_TTL and then until the URL's next event."""
    urls = sorted(raw.decode() for raw in connection.smembers(URLS))  # type: ignore[union-attr]
    with connection.pipeline(transaction=False) as pipe:
        for url in urls:
            pipe.llen(pending(url))
            pipe.exists(runner(url))
        replies = pipe.execute()
    forget = connection.register_script(_FORGET)
    needed = 0
    for url, length, waiting in zip(urls, replies[::2], replies[1::2], strict=True):
        if not length:
            forget(keys=[URLS, pending(url)], args=[url])
        elif not waiting:
            first = connection.lindex(pending(url), 0)
            stored = connection.get(keys.instance(parse(first)[1])) if first is not None else None
            ensure_runner(connection, queue, url, Instance.loads(stored) if stored is not None else None)
            needed += 1
    return needed
