"""A batch's checks before it sends anything: skipped, parked or already reported.

Each event of a batch (workers/batches.py) is decided exactly as a single delivery
decides it (workers/delivery.py): skipped when its instance is gone, switched off or
moved; parked when the instance is paused; skipped when polling already reported the
change. The pause gate and the polling dedup each take one script call for the batch.
"""

from __future__ import annotations

import redis
import structlog

from workers.changes import reported_change
from workers.delivery import PAUSED_REASON, skip_reason
from workers.delivery_log import Outcome
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import Pauses
from workers.poll_store import PollStore, marker_ttl

# Its lines are the batch's, under the same logger name as before these checks had a module of their own.
log = structlog.get_logger(logger_name="workers.batches")

REPORTED = "the poller already reported this change"

Delivery = tuple[InboxItem, str, int]  # the item, as queued, and the instance it goes to


def decide(
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
            outcomes.append(not_sent(event, text, instance_id, "SKIPPED", reason))
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
            outcomes.append(not_sent(event, text, instance_id, "PAUSED", PAUSED_REASON))
        elif change is not None and not next(fresh):
            outcomes.append(not_sent(event, text, instance_id, "SKIPPED", REPORTED))
        else:
            to_send.append((event, text, instance_id))
    return (outcomes, [], to_send) if handed else (outcomes, to_send, [])


def not_sent(event: InboxItem, text: str, instance_id: int, status: str, reason: str) -> Outcome:
    log.info("delivery.paused" if status == "PAUSED" else "delivery.skipped", reason=reason,
             event_id=event.event_id, instance_id=instance_id)  # fmt: skip
    return Outcome(event.notification_id(instance_id), instance_id, text, status, reason, received=event.received)
