"""Every Redis key the relay writes, in one place.

All keys live under the `relay:` prefix, except RQ's own `rq:` keys.
"""

from __future__ import annotations

import hashlib

PREFIX = "relay:"

INSTANCE_SEQUENCE = PREFIX + "instance-seq"
INBOX = PREFIX + "inbox"
DISPATCHERS = PREFIX + "dispatchers"  # dispatcher names scored by their last heartbeat (unix seconds)
DISPATCHER_DEAD_AFTER = 60  # seconds without a heartbeat after which a dispatcher counts as dead
DELIVERY_QUEUE = "relay-deliveries"
POLL_QUEUE = "relay-polls"
QUEUES = (DELIVERY_QUEUE, POLL_QUEUE)  # in the order workers take jobs
# Polling instances scored by when their next round is due (unix seconds).
POLL_DUE = PREFIX + "poll:due"
# Instances whose polling was switched off after failures, scored by when.
POLL_DISABLED = PREFIX + "poll:disabled"


def instance(instance_id: int) -> str:
    """The JSON record of one instance."""
    return f"{PREFIX}instance:{instance_id}"


def user_instances(user_id: str) -> str:
    """Set of the instance ids a user owns."""
    return f"{PREFIX}user:{user_id}:instances"


def store_instances(store_id: int) -> str:
    """Set of the instance ids attached to an Ecwid store: the routing index."""
    return f"{PREFIX}store:{store_id}:instances"


def seen(event_id: str, route: str = "") -> str:
    """Marks an Ecwid event as accepted, for deduplication.

    Keyed by `eventId` alone (the signed field, not the unsigned storeId), so a captured
    webhook replayed under another storeId is still a duplicate. Explicitly routed posts
    (`route`, the target ids) are deduplicated per route, so posting one event to two
    instances by path delivers it to both.
    """
    return f"{PREFIX}seen:{event_id}" + (f":{route}" if route else "")


def dispatching(dispatcher: str) -> str:
    """A dispatcher's in-flight list: inbox items taken but not yet turned into jobs."""
    return f"{PREFIX}inbox:dispatching:{dispatcher}"


def poll_state(instance_id: int) -> str:
    """Hash of an instance's poller state: cursors, failure counts, why it stopped."""
    return f"{PREFIX}poll:{instance_id}"


def poll_lock(instance_id: int) -> str:
    """Held while a polling round of the instance runs, so two never overlap."""
    return f"{PREFIX}poll:{instance_id}:lock"


def change(instance_id: int, object_type: str, object_id: str) -> str:
    """The latest change of one Ecwid entity forwarded to an instance (see workers/changes.py)."""
    return f"{PREFIX}change:{instance_id}:{object_type}:{object_id}"


def ecwid_token(token_hash: str) -> str:
    """An Ecwid API token's request budget (workers/rate_limit.py); keyed by a hash of the token."""
    return f"{PREFIX}ecwid-token:{token_hash}"


def delivery(notification_id: str) -> str:
    """The event log record of one notification (workers/delivery_log.py)."""
    return f"{PREFIX}delivery:{notification_id}"


def delivery_attempts(notification_id: str) -> str:
    """The attempts of one notification, oldest first."""
    return f"{PREFIX}delivery:{notification_id}:attempts"


def instance_deliveries(instance_id: int) -> str:
    """An instance's event log index: notification ids scored by creation time (ms)."""
    return f"{PREFIX}instance:{instance_id}:deliveries"


# Pause and drain (workers/pausing.py).
DELIVERY_DUE = PREFIX + "pause:due"  # instance ids scored by when their next probe or drain step is due (ms)
DELIVERY_PAUSED = PREFIX + "pause:instances"  # ids of instances whose deliveries are paused or draining


def delivery_state(instance_id: int) -> str:
    """An instance's delivery state: paused or draining, since when, why, failures in a row."""
    return f"{PREFIX}instance:{instance_id}:delivery"


def delivery_buffer(instance_id: int) -> str:
    """The inbox items held while an instance's deliveries are paused, oldest first."""
    return f"{PREFIX}instance:{instance_id}:buffer"


def endpoint_limit(callback_url: str) -> str:
    """The RQ RateLimit key of a callback URL: in-flight deliveries to it are capped."""
    return "endpoint:" + hashlib.sha256(callback_url.encode()).hexdigest()[:24]
