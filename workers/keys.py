"""Every Redis key the relay writes, in one place.

All keys live under the `relay:` prefix, except RQ's own `rq:` keys.
"""

from __future__ import annotations

PREFIX = "relay:"

INSTANCE_SEQUENCE = PREFIX + "instance-seq"
INBOX = PREFIX + "inbox"
DISPATCHERS = PREFIX + "dispatchers"
DELIVERY_QUEUE = "relay-deliveries"


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
