"""The tick job: probe a paused instance's endpoint, or move the next part of its buffer back.

Dispatchers enqueue one `tick` for each instance that is due in `relay:pause:due`
(workers/pausing.py), with the lease they claimed it under. A tick that comes
after its lease was superseded does nothing, and a lock per instance keeps two
ticks from overlapping, so a drain step never moves the same items twice.
"""

from __future__ import annotations

import uuid

import structlog
from rq import Queue
from rq.serializers import JSONSerializer

from workers import context, envelope, jobs, keys
from workers.delivery import PAUSED_REASON, already_reported, send, skip_reason
from workers.delivery_log import DeliveryLog
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import LEASE_MS, Pauses, drain_size

log = structlog.get_logger(logger_name="workers.drain")

MAX_SKIPPED = 100  # buffered items a probe may retire without sending before it yields


def tick(instance_id: int, lease: int | None = None) -> str:
    """Probe (when paused) or drain one step (when draining). Returns what it did; never raises
    for what the endpoint does. A late tick, or one another tick's lock excludes, is a no-op."""
    ctx = context.current()
    pauses = Pauses(ctx.redis)
    if lease is not None and not pauses.holds(instance_id, lease):
        return "superseded"
    lock = ctx.redis.lock(keys.delivery_state(instance_id) + ":tick", timeout=LEASE_MS / 1000, blocking=False)
    if not lock.acquire():
        return "busy"
    try:
        with structlog.contextvars.bound_contextvars(instance_id=instance_id):
            state = pauses.state(instance_id)
            stored = ctx.redis.get(keys.instance(instance_id))
            if stored is None:
                pauses.forget(instance_id)
                return "forgotten"
            instance = Instance.loads(stored)
            if state.get("state") == "paused" and not state.get("manual"):
                return _probe(pauses, instance)
            if state.get("state") == "draining":
                return _drain_step(pauses, instance, int(state.get("step", "0")))
            pauses.idle(instance_id)
            return "idle"
    finally:
        lock.release()


def _probe(pauses: Pauses, instance: Instance) -> str:
    """Send the oldest buffered notification. Reached (2xx, or a deliberate 4xx): drain."""
    ctx = context.current()
    events_log = DeliveryLog(ctx.redis, ctx.settings.event_retention)
    for _ in range(MAX_SKIPPED):
        item = pauses.head(instance.id)
        if item is None:
            pauses.wait(instance.id, 60)  # nothing to probe with; a parked item makes it due sooner
            return "nothing to probe"
        event = InboxItem.loads(item)
        if skip_reason(event, instance) is not None:
            # Events off, or the instance moved to another store: drain, and each job says SKIPPED why.
            pauses.probe_reached(instance.id, "")
            return "resumed: nothing to send"
        webhook_id = event.notification_id(instance.id)
        if not already_reported(event, instance, webhook_id):
            break
        events_log.mark(webhook_id, instance.id, item, "SKIPPED", "the poller already reported this change")
        pauses.drop_head(instance.id, item)
    else:
        pauses.wait(instance.id, 1)
        return "skipped some; probing next"
    sent = send(ctx.client, instance, envelope.build(event, instance), webhook_id)
    verdict = sent.verdict
    if verdict is None or not (verdict.retry or verdict.gone):
        status = "NOTIFIED" if verdict is None else "FAILED"
        reason = None if verdict is None else verdict.reason
        events_log.attempted(webhook_id, instance.id, item, sent.entry, status, reason=reason)
        pauses.probe_reached(instance.id, item)
        log.info("delivery.resumed", url=sent.target, status=sent.status, probed=webhook_id)
        return "resumed"
    events_log.attempted(webhook_id, instance.id, item, sent.entry, "PAUSED", reason=PAUSED_REASON)
    if verdict.gone:
        pauses.pause(instance.id, f"{verdict.reason}; resume by hand once it is back")
        return "gone"
    delay = pauses.probe_failed(instance.id, item)
    log.warning("delivery.probe_failed", url=sent.target, status=sent.status, reason=verdict.reason, next_in=delay)
    return "probe failed"


def _drain_step(pauses: Pauses, instance: Instance, step: int) -> str:
    """Move the next `drain_size(step)` buffered items into the queue, in one transaction."""
    ctx = context.current()
    items = pauses.buffered(instance.id, drain_size(step))
    queue = Queue(keys.DELIVERY_QUEUE, connection=ctx.redis, serializer=JSONSerializer)
    events_log = DeliveryLog(ctx.redis, ctx.settings.event_retention)
    created = []
    for text in items:
        event = InboxItem.loads(text)
        job_id = f"dlv-{event.notification_id(instance.id).replace('-', '')}-d{uuid.uuid4().hex[:8]}"
        created.append((event, jobs.delivery_job(queue, event, text, instance.id, instance, job_id, drained=True)))
    with ctx.redis.pipeline(transaction=True) as pipe:
        jobs.enqueue(queue, [job for _, job in created], pipe)
        for event, job in created:
            events_log.resumed(pipe, event.notification_id(instance.id), job.id)
        pauses.drained(pipe, instance.id, len(items))
        pipe.execute()
    log.info("delivery.drained", moved=len(items), step=step)
    return f"drained {len(items)}"
