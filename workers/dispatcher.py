"""The dispatcher: moves accepted events from the inbox into RQ delivery jobs.

The receiver only appends to `relay:inbox` (one Redis round trip, no RQ in the
request path). Each worker process runs one dispatcher thread, which:

1. moves a batch of items from the inbox to its own `dispatching` list (BLMOVE,
   the reliable-queue pattern: an item is always in exactly one list);
2. in one MULTI/EXEC transaction, creates one RQ job per (event, instance) with
   `enqueue_many` and clears its `dispatching` list.

A crash between 1 and 2 leaves the items in the `dispatching` list. The same
dispatcher picks them up again on its next step; a dispatcher that died for good
stops heartbeating, and any other dispatcher moves its items back to the inbox.
Nothing is lost and, because step 2 is atomic, no job is created twice.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import redis
import structlog
from rq import Queue, Retry
from rq.job import Job
from rq.queue import EnqueueData

from workers import jobs, keys, pending
from workers.delivery_log import DeliveryLog
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import Pauses

log = structlog.get_logger(logger_name="workers.dispatcher")

BATCH = 200
BLOCK_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
# A dispatcher silent for this long is dead; its items go back to the inbox.
ORPHAN_AFTER_SECONDS = float(keys.DISPATCHER_DEAD_AFTER)
DEAD_LETTERS = keys.PREFIX + "inbox:malformed"
DUE_CHECK_SECONDS = 1.0
SWEEP_SECONDS = 60.0
INSTANCE_CACHE_SECONDS = 1.0
CACHE_LIMIT = 20_000  # instances remembered before the expired ones are dropped

# Move up to ARGV[1] more items from the inbox to the dispatching list, stopping when the inbox is
# empty: one round trip that costs as many moves as there are items (a pipeline of BATCH - 1 LMOVEs
# would cost BATCH - 1 commands even for a lone event).
_TAKE_MORE = """
local moved = {}
for _ = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  moved[#moved + 1] = item
end
return moved
"""


class Dispatcher:
    def __init__(self, connection: redis.Redis, queue: Queue, name: str, retention: int) -> None:
        self.redis = connection
        self.queue = queue
        self.log = DeliveryLog(connection, retention)
        self.pauses = Pauses(connection)
        self.poll_queue = Queue(keys.POLL_QUEUE, connection=queue.connection, serializer=queue.serializer)
        self.name = name
        self.processing = keys.dispatching(name)
        self._last_heartbeat = 0.0
        self._take_more = connection.register_script(_TAKE_MORE)
        self._last_due_check = 0.0
        self._last_sweep = time.monotonic()
        self._cache: dict[int, tuple[float, Instance | None]] = {}  # id -> (expires, instance or gone)

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set. Survives Redis outages by backing off."""
        backoff = 0.1
        while not stop.is_set():
            try:
                self.heartbeat()
                self.check_due()
                self.step()
                backoff = 0.1
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("dispatcher.redis_unavailable", error=str(exc), retry_in=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("dispatcher.step_failed")
                stop.wait(1.0)
        self.release()

    def release(self) -> None:
        """On the way out: hand any taken items back to the inbox, then deregister.
        If Redis is down now, the registration stays and others recover the items later."""
        try:
            while self.redis.lmove(self.processing, keys.INBOX, "RIGHT", "RIGHT") is not None:
                pass
            self.redis.zrem(keys.DISPATCHERS, self.name)
        except (redis.ConnectionError, redis.TimeoutError):
            log.warning("dispatcher.release_deferred", items_in=self.processing)

    def heartbeat(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        # Redis's clock, not ours: a worker whose clock runs ahead must not declare the others dead.
        seconds, micros = self.redis.time()
        now = seconds + micros / 1e6
        self.redis.zadd(keys.DISPATCHERS, {self.name: now})
        self._last_heartbeat = time.monotonic()
        self.recover_orphans(now)

    def check_due(self) -> None:
        """Once a second: start the probes and drain steps of paused instances that are due. Once a
        minute: make sure every callback URL with pending events has a runner (workers/pending.py)."""
        now = time.monotonic()
        if now - self._last_due_check >= DUE_CHECK_SECONDS:
            self._last_due_check = now
            self.schedule_due()
        if now - self._last_sweep >= SWEEP_SECONDS:
            self._last_sweep = now
            if needed := pending.sweep(self.redis, self.queue):
                log.warning("dispatcher.runners_requeued", urls=needed)

    def recover_orphans(self, now: float) -> int:
        """Move the items of dead dispatchers back to the inbox. Returns how many."""
        moved = 0
        for raw_name in self.redis.zrangebyscore(keys.DISPATCHERS, 0, now - ORPHAN_AFTER_SECONDS):
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            orphan = keys.dispatching(name)
            while self.redis.lmove(orphan, keys.INBOX, "RIGHT", "RIGHT") is not None:
                moved += 1
            self.redis.zrem(keys.DISPATCHERS, name)
        if moved:
            log.warning("dispatcher.recovered_orphans", items=moved)
        return moved

    def step(self, block: float = BLOCK_SECONDS) -> int:
        """Take one batch (waiting up to `block` seconds) and turn it into jobs."""
        items: list[bytes] = self.redis.lrange(self.processing, 0, -1)  # type: ignore[assignment]
        if not items:
            first = self.redis.blmove(keys.INBOX, self.processing, block, "RIGHT", "LEFT")  # type: ignore[arg-type]
            if first is None:
                return 0
            items = [first, *self._take_more(keys=[keys.INBOX, self.processing], args=[BATCH - 1])]  # type: ignore[list-item]
        self.dispatch(items)
        return len(items)

    def dispatch(self, items: list[bytes]) -> None:
        decoded: list[tuple[InboxItem, str]] = []
        malformed = []
        for raw in items:
            try:
                decoded.append((InboxItem.loads(raw), raw.decode()))
            except (ValueError, KeyError, TypeError):
                malformed.append(raw)
        instances = self._instances({i for item, _ in decoded for i in item.instances})
        results: list[EnqueueData] = []
        replays: list[InboxItem] = []
        singles: list[tuple[InboxItem, str, int]] = []  # deliveries to instances without a callback URL
        by_url: dict[str, list[tuple[InboxItem, str, int]]] = {}
        for item, text in decoded:
            if item.kind == "results":
                results.append(_results_job(item, text))
            elif item.kind == "replay":
                replays.append(item)
            else:
                for instance_id in item.instances:
                    instance = instances.get(instance_id)
                    if instance is not None and instance.callback_url:
                        by_url.setdefault(keys.endpoint_limit(instance.callback_url), []).append(
                            (item, text, instance_id)
                        )
                    else:
                        singles.append((item, text, instance_id))  # its job says SKIPPED, and why

        created: list[Job] = []
        records: list[tuple[InboxItem, int, str]] = []  # event log entries: (item, instance, job id)
        for item, text, instance_id in singles:
            job_id = "dlv-" + _hex(item.notification_id(instance_id))
            created.append(jobs.delivery_job(self.queue, item, text, instance_id, None, job_id))
            records.append((item, instance_id, job_id))
        replayed = [pair for item in replays for pair in self._replay_jobs(item, instances.get(item.instances[0]))]
        created.extend(job for _, job in replayed)
        for url, group in by_url.items():
            records.extend((item, instance_id, f"url:{url}") for item, _, instance_id in group)

        def fill(pipe: redis.client.Pipeline, idle: set[str]) -> None:
            # Events for a callback URL wait in its pending list for the URL's runner (workers/pending.py).
            for url, group in by_url.items():
                entries = [pending.entry(text, instance_id) for _, text, instance_id in group]
                # The limit of the URL is the last queued instance's (workers/jobs.py): the group's last.
                pending.append(pipe, self.queue, url, entries, instances.get(group[-1][2]), idle=url in idle)
            jobs.enqueue(self.queue, created, pipe)
            if results:
                self.poll_queue.enqueue_many(results, pipeline=pipe)
            self.log.received_many(pipe, records)
            for notification, job in replayed:
                self.log.replayed(pipe, notification, job.id)
            if malformed:
                pipe.lpush(DEAD_LETTERS, *malformed)
            pipe.delete(self.processing)

        pending.transaction(self.redis, set(by_url), fill)
        if malformed:
            log.error("dispatcher.malformed_items", count=len(malformed), kept_in=DEAD_LETTERS)
        log.debug("dispatcher.dispatched", events=len(items) - len(malformed), urls=len(by_url))

    def _instances(self, ids: set[int]) -> dict[int, Instance]:
        """The instances a batch goes to (for their callback URL and concurrency): those read in the
        last INSTANCE_CACHE_SECONDS as they were, the others in one MGET. Only the grouping by URL
        and the URL's limit can be that old: runners read each instance again before they send."""
        now = time.monotonic()
        found: dict[int, Instance] = {}
        unread: list[int] = []
        for instance_id in sorted(ids):
            cached = self._cache.get(instance_id)
            if cached is None or cached[0] <= now:
                unread.append(instance_id)
            elif cached[1] is not None:
                found[instance_id] = cached[1]
        if unread:
            if len(self._cache) > CACHE_LIMIT:
                self._cache = {i: entry for i, entry in self._cache.items() if entry[0] > now}
            for instance_id, raw in zip(unread, self.redis.mget([keys.instance(i) for i in unread]), strict=True):
                instance = Instance.loads(raw) if raw is not None else None
                self._cache[instance_id] = (now + INSTANCE_CACHE_SECONDS, instance)
                if instance is not None:
                    found[instance_id] = instance
        return found

    def _replay_jobs(self, request: InboxItem, instance: Instance | None) -> list[tuple[str, Job]]:
        """Delivery jobs for the notifications a replay request names that the log still holds.
        Each keeps its notification id (receivers deduplicate on it) under a new job id."""
        instance_id = request.instances[0]
        found = []
        for notification in orjson.loads(request.raw):
            stored = self.redis.hmget(keys.delivery(notification), "item", "replays", "instance")
            item, replays, owner = (None if v is None else v.decode() for v in stored)  # type: ignore[union-attr]
            if item is None or owner != str(instance_id):
                continue  # expired meanwhile, or not this instance's
            job_id = f"dlv-{_hex(notification)}-r{int(replays or 0) + 1}-{uuid.uuid4().hex[:6]}"
            job = jobs.delivery_job(self.queue, InboxItem.loads(item), item, instance_id, instance, job_id)
            found.append((notification, job))
        return found

    def schedule_due(self) -> int:
        """Enqueue a `tick` (probe or drain step, workers/drain.py) for each instance that is due."""
        due, lease = self.pauses.claim_due()
        for instance_id in due:
            # At the front: a probe or drain step must not wait behind a backlog longer than its lease.
            self.queue.enqueue(
                "workers.drain.tick", instance_id, lease, job_id=f"tick-{instance_id}-{uuid.uuid4().hex[:12]}",
                job_timeout=jobs.JOB_TIMEOUT, result_ttl=0, failure_ttl=jobs.FAILURE_TTL, at_front=True,
                description=f"probe or drain instance {instance_id}",
            )  # fmt: skip
        return len(due)


def _hex(notification: str) -> str:
    return notification.replace("-", "")


def _results_job(item: InboxItem, text: str) -> EnqueueData:
    """Polling results posted from outside: classified by a job, like our own rounds."""
    return Queue.prepare_data(
        "workers.polling.ingest_results", args=(text,), job_id="res-" + item.event_id,
        timeout=120, result_ttl=0, failure_ttl=jobs.FAILURE_TTL,
        retry=Retry(max=5, interval=[1, 5, 30, 120, 600]),
        description=f"classify {item.event_type} results for instance {item.instances[0]}",
    )  # fmt: skip
