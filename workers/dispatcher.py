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

import redis
import structlog
from rq import Queue, Retry

from workers import delivery, keys
from workers.inbox import InboxItem

log = structlog.get_logger(logger_name="workers.dispatcher")

BATCH = 200
BLOCK_SECONDS = 1.0
HEARTBEAT_SECONDS = 5.0
# A dispatcher silent for this long is dead; its items go back to the inbox.
ORPHAN_AFTER_SECONDS = 60.0
DEAD_LETTERS = keys.PREFIX + "inbox:malformed"


class Dispatcher:
    def __init__(self, connection: redis.Redis, queue: Queue, name: str) -> None:
        self.redis = connection
        self.queue = queue
        self.poll_queue = Queue(keys.POLL_QUEUE, connection=queue.connection, serializer=queue.serializer)
        self.name = name
        self.processing = keys.dispatching(name)
        self._last_heartbeat = 0.0

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set. Survives Redis outages by backing off."""
        backoff = 0.1
        while not stop.is_set():
            try:
                self.heartbeat()
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
        now = time.time()
        if not force and now - self._last_heartbeat < HEARTBEAT_SECONDS:
            return
        self.redis.zadd(keys.DISPATCHERS, {self.name: now})
        self._last_heartbeat = now
        self.recover_orphans(now)

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
            with self.redis.pipeline(transaction=False) as pipe:
                for _ in range(BATCH - 1):
                    pipe.lmove(keys.INBOX, self.processing, "RIGHT", "LEFT")
                items = [first, *(item for item in pipe.execute() if item is not None)]  # type: ignore[list-item]
        self.dispatch(items)
        return len(items)

    def dispatch(self, items: list[bytes]) -> None:
        jobs = []
        results = []
        malformed = []
        for raw in items:
            try:
                item = InboxItem.loads(raw)
            except (ValueError, KeyError, TypeError):
                malformed.append(raw)
                continue
            text = raw.decode()
            if item.kind == "results":
                # Polling results posted from outside: classified by a job, like our own rounds.
                results.append(
                    Queue.prepare_data(
                        "workers.polling.ingest_results", args=(text,), job_id="res-" + item.event_id,
                        timeout=120, result_ttl=0, failure_ttl=delivery.FAILURE_TTL,
                        retry=Retry(max=5, interval=[1, 5, 30, 120, 600]),
                        description=f"classify {item.event_type} results for instance {item.instances[0]}",
                    )
                )  # fmt: skip
                continue
            for instance_id in item.instances:
                jobs.append(
                    Queue.prepare_data(
                        "workers.delivery.deliver",
                        args=(text, instance_id),
                        job_id="dlv-" + item.notification_id(instance_id).replace("-", ""),
                        timeout=delivery.JOB_TIMEOUT,
                        result_ttl=0,
                        failure_ttl=delivery.FAILURE_TTL,
                        retry=delivery.retry_policy(),
                        description=f"deliver {item.event_type} {item.key} to instance {instance_id}",
                    )
                )
        with self.redis.pipeline(transaction=True) as pipe:
            if jobs:
                self.queue.enqueue_many(jobs, pipeline=pipe)
            if results:
                self.poll_queue.enqueue_many(results, pipeline=pipe)
            if malformed:
                pipe.lpush(DEAD_LETTERS, *malformed)
            pipe.delete(self.processing)
            pipe.execute()
        if malformed:
            log.error("dispatcher.malformed_items", count=len(malformed), kept_in=DEAD_LETTERS)
        log.debug("dispatcher.dispatched", events=len(items) - len(malformed), jobs=len(jobs))
