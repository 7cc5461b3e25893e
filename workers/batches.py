"""Batched deliveries: several events for one callback URL in one RQ job.

Under load the dispatcher finds several events for the same callback URL in one
take from the inbox (an app's instances often share one endpoint); it gives them to
one job instead of one job each, and the URL's concurrency limit counts the batch as
the one request in flight it is. RQ's own work per job (dequeue, registries,
heartbeats, rate limiter, cleanup: about 45 Redis commands in 15 round trips, see
docs/performance.md) is then paid once per batch, and so is ours: a batch reads its
instances in one MGET, passes all its events through the pause gate and the polling
dedup in one script call each, sends them one by one, and writes the event log for
all of them in one script call at the end. Each event is decided exactly as a single
delivery decides it (workers/delivery.py: skip, park, already reported, send).

A batch never decides on failures. At its first failed attempt it hands that event
to a job of its own carrying the attempt, which decides exactly as a single delivery
would (retry on the schedule, pause, fail into RQ's failed registry), and the rest
to single jobs; so does a batch that has run for BUDGET_SECONDS, so that a slow
endpoint holds a worker no longer than a single delivery would. Handed-off jobs go
through the same per-URL limiter, and pass the gate and the dedup again (claiming a
change again for the same notification is harmless).
"""

from __future__ import annotations

import time
from typing import Any

import redis
import structlog
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from workers import context, envelope, jobs, keys
from workers.delivery import PAUSED_REASON, Sent, reported_change, send, skip_reason
from workers.delivery_log import DeliveryLog, Outcome
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import Pauses
from workers.poll_store import PollStore, marker_ttl

log = structlog.get_logger(logger_name="workers.batches")

MAX_EVENTS = 50
BUDGET_SECONDS = 1.0
REPORTED = "the poller already reported this change"

Delivery = tuple[InboxItem, str, int]  # the item, as queued, and the instance it goes to


def deliver_batch(deliveries: list[list[Any]]) -> str:
    """Deliver `deliveries`, [inbox item, instance id] each, in order. They share a callback URL
    (and so its concurrency limit). Returns a summary such as "delivered 48, handed off 2".

    Raises (and RQ retries the whole batch) only when Redis fails before anything was sent or
    while the outcomes are written; an attempt that crashes hands it and the rest off instead."""
    started = time.monotonic()
    ctx = context.current()
    batch: list[Delivery] = [(InboxItem.loads(text), text, int(i)) for text, i in deliveries]
    instances = read_instances(ctx.redis, {instance_id for *_, instance_id in batch})
    pauses = Pauses(ctx.redis)
    outcomes, to_send, rest = _decide(pauses, PollStore(ctx.redis), batch, instances, ctx.settings.dedup_ttl)
    failure: Sent | None = None
    for n, (event, text, instance_id) in enumerate(to_send):
        if n and time.monotonic() - started > BUDGET_SECONDS:
            rest = to_send[n:]
            break
        webhook_id = event.notification_id(instance_id)
        instance = instances[instance_id]
        try:
            with structlog.contextvars.bound_contextvars(
                event_id=event.event_id, store_id=event.store_id, instance_id=instance_id, webhook_id=webhook_id,
                batch_position=n,
            ):  # fmt: skip
                sent = send(ctx.client, instance, envelope.build(event, instance), webhook_id)
                if sent.verdict is None:
                    log.info("delivery.succeeded", url=sent.target, status=sent.status, ms=sent.ms)
        except Exception:
            # Not the endpoint's doing (a bad record, a bug): this event and the rest become single
            # jobs, each with its own crash retries, instead of the batch being run again.
            log.exception("batch.attempt_crashed", position=n)
            rest = to_send[n:]
            break
        if sent.verdict is not None:
            rest, failure = to_send[n:], sent
            break
        outcomes.append(Outcome(webhook_id, instance_id, text, "NOTIFIED", attempt=sent.entry))
    delivered = sorted({o.instance_id for o in outcomes if o.status == "NOTIFIED"})
    with ctx.redis.pipeline(transaction=False) as pipe:
        DeliveryLog(ctx.redis, ctx.settings.event_retention).finish(outcomes, pipe)
        for instance_id in delivered:
            # Once per instance, and before any failure handed off is judged: successes end a failure run.
            pauses.succeeded(instance_id, pipe)
        pipe.execute()
    handed_off = hand_off([[text, i] for _, text, i in rest], failure, instances) if rest else 0
    return _summary(outcomes, handed_off)


def _decide(
    pauses: Pauses, polls: PollStore, batch: list[Delivery], instances: dict[int, Instance], dedup_ttl: int
) -> tuple[list[Outcome], list[Delivery], list[Delivery]]:
    """What each event needs before any is sent, as `workers.delivery.attempt` decides it: skipped
    (instance gone, off, moved), parked (paused), already reported by polling, or to be sent.
    Returns the outcomes of those not to be sent, those to send, and those to hand off unsent (when
    deciding crashed on bad data), each in order."""
    outcomes: list[Outcome] = []
    flowing: list[Delivery] = []
    for event, text, instance_id in batch:
        reason = skip_reason(event, instances.get(instance_id))
        if reason is None:
            flowing.append((event, text, instance_id))
        else:
            outcomes.append(_not_sent(event, text, instance_id, "SKIPPED", reason))
    try:
        parked = pauses.gate_many([(instance_id, text) for _, text, instance_id in flowing])
    except redis.ResponseError:
        log.exception("batch.gate_crashed")  # one instance's broken state: let each decide alone
        return outcomes, [], flowing
    try:
        changes = [None if stop else reported_change(event) for (event, *_), stop in zip(flowing, parked, strict=True)]
        claims = [
            (instance_id, change, event.notification_id(instance_id), marker_ttl(instances[instance_id], dedup_ttl))
            for (event, _, instance_id), change in zip(flowing, changes, strict=True)
            if change is not None
        ]
        fresh = iter(polls.claim_webhook_changes(claims))
    except (redis.ConnectionError, redis.TimeoutError):
        raise
    except Exception:
        # One event's bad data (a broken change marker, say) must not hold back the others: the
        # events that passed the gate each go to a job of their own, where only that one crashes.
        log.exception("batch.dedup_crashed")
        changes, fresh = [None] * len(flowing), iter([])
        handed = True
    else:
        handed = False
    to_send: list[Delivery] = []
    for (event, text, instance_id), is_parked, change in zip(flowing, parked, changes, strict=True):
        if is_parked:
            outcomes.append(_not_sent(event, text, instance_id, "PAUSED", PAUSED_REASON))
        elif change is not None and not next(fresh):
            outcomes.append(_not_sent(event, text, instance_id, "SKIPPED", REPORTED))
        else:
            to_send.append((event, text, instance_id))
    return (outcomes, [], to_send) if handed else (outcomes, to_send, [])


def _not_sent(event: InboxItem, text: str, instance_id: int, status: str, reason: str) -> Outcome:
    log.info("delivery.paused" if status == "PAUSED" else "delivery.skipped", reason=reason,
             event_id=event.event_id, instance_id=instance_id)  # fmt: skip
    return Outcome(event.notification_id(instance_id), instance_id, text, status, reason)


def read_instances(connection: redis.Redis, ids: set[int]) -> dict[int, Instance]:
    """The instances with these ids that exist now, in one MGET."""
    wanted = sorted(ids)
    if not wanted:
        return {}
    found = connection.mget([keys.instance(i) for i in wanted])
    return {i: Instance.loads(raw) for i, raw in zip(wanted, found, strict=True) if raw is not None}


def hand_off(
    deliveries: list[list[Any]], failure: Sent | None = None, instances: dict[int, Instance] | None = None
) -> int:
    """Queue each of `deliveries` as a single delivery job (one MULTI), and point the event log at it.
    `failure` is the first one's failed attempt: its job decides on it instead of sending again."""
    ctx = context.current()
    queue = Queue(keys.DELIVERY_QUEUE, connection=ctx.redis, serializer=JSONSerializer)
    if instances is None:
        instances = read_instances(ctx.redis, {int(instance_id) for _, instance_id in deliveries})
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


def _summary(outcomes: list[Outcome], handed_off: int) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        what = {"NOTIFIED": "delivered", "SKIPPED": "skipped", "PAUSED": "paused"}[outcome.status]
        counts[what] = counts.get(what, 0) + 1
    parts = [f"{what} {count}" for what, count in sorted(counts.items())]
    return ", ".join([*parts, f"handed off {handed_off}"])
