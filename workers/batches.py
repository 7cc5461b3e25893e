"""Batched deliveries: several events for one instance in one RQ job.

Under load the dispatcher finds several events for the same callback URL in one
take from the inbox (an app's instances often share one endpoint); it gives them to
one job instead of one job each, and the URL's concurrency limit counts the batch as
the one request in flight it is. RQ's own work
per job (dequeue, registries, heartbeats, rate limiter, cleanup: about 45 Redis
commands in 15 round trips, see docs/performance.md) is then paid once per batch.
Each event still goes through `workers.delivery.attempt`: instance read now, pause
gate, polling dedup, signed POST, event log.

A batch never decides on failures. At its first failed attempt it hands that event
to a job of its own carrying the attempt, which decides exactly as a single delivery
would (retry on the schedule, pause, fail into RQ's failed registry), and the rest
to single jobs; so does a batch that has run for BUDGET_SECONDS, so that a slow
endpoint holds a worker no longer than a single delivery would. Handed-off jobs go
through the same per-URL limiter.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from workers import context, jobs, keys
from workers.delivery import Sent, attempt
from workers.delivery_log import DeliveryLog
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import Pauses

log = structlog.get_logger(logger_name="workers.batches")

MAX_EVENTS = 50
BUDGET_SECONDS = 1.0


def deliver_batch(deliveries: list[list[Any]]) -> str:
    """Deliver `deliveries`, [inbox item, instance id] each, in order. They share a callback URL
    (and so its concurrency limit). Returns a summary such as "delivered 48, handed off 2"."""
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    rest: list[list[Any]] = []
    failure: Sent | None = None
    succeeded: set[int] = set()
    for n, (item, instance_id) in enumerate(deliveries):
        if n and time.monotonic() - started > BUDGET_SECONDS:
            rest = deliveries[n:]
            break
        try:
            with structlog.contextvars.bound_contextvars(batch_position=n):
                outcome = attempt(item, int(instance_id), in_batch=True)
        except Exception:
            # Not the endpoint's doing (a Redis blip, a bad record): this event and the rest become
            # single jobs, each with its own crash retries, instead of the batch being run again.
            log.exception("batch.attempt_crashed", position=n)
            rest = deliveries[n:]
            break
        if isinstance(outcome, Sent):
            rest, failure = deliveries[n:], outcome
            break
        if outcome == "delivered":
            succeeded.add(int(instance_id))
        outcomes[str(outcome)] = outcomes.get(str(outcome), 0) + 1
    pauses = Pauses(context.current().redis)
    for instance_id in sorted(succeeded):
        # Once per instance, and before any failure handed off is judged: successes end a failure run.
        pauses.succeeded(instance_id)
    return _summary(outcomes, hand_off(rest, failure) if rest else 0)


def hand_off(deliveries: list[list[Any]], failure: Sent | None = None) -> int:
    """Queue each of `deliveries` as a single delivery job (one MULTI), and point the event log at it.
    `failure` is the first one's failed attempt: its job decides on it instead of sending again."""
    ctx = context.current()
    queue = Queue(keys.DELIVERY_QUEUE, connection=ctx.redis, serializer=JSONSerializer)
    ids = sorted({int(instance_id) for _, instance_id in deliveries})
    found = ctx.redis.mget([keys.instance(i) for i in ids])
    instances = {i: Instance.loads(raw) for i, raw in zip(ids, found, strict=True) if raw is not None}
    events_log = DeliveryLog(ctx.redis, ctx.settings.event_retention)
    created: list[Job] = []
    with ctx.redis.pipeline(transaction=True) as pipe:
        for n, (text, instance_id) in enumerate(deliveries):
            event = InboxItem.loads(text)
            notification = event.notification_id(int(instance_id))
            job_id = f"dlv-{ordered_id(n)}-{notification.replace('-', '')}"
            decided = failure.dumps() if failure is not None and n == 0 else None
            created.append(jobs.delivery_job(queue, event, text, int(instance_id), instances.get(int(instance_id)),
                                             job_id, failure=decided))  # fmt: skip
            events_log.handed_off(pipe, notification, job_id)
        jobs.enqueue(queue, created, pipe)
        pipe.execute()
    log.info("batch.handed_off", events=len(deliveries))
    return len(deliveries)


def ordered_id(position: int) -> str:
    """A job id part that sorts in creation order: RQ's rate limiter releases held jobs of the same
    second in id order, so ids in order keep the events of a hand-off in order."""
    return f"{time.time_ns():016x}{position:04x}"


def _summary(outcomes: dict[str, int], handed_off: int) -> str:
    parts = [f"{what} {count}" for what, count in sorted(outcomes.items())]
    return ", ".join([*parts, f"handed off {handed_off}"])
