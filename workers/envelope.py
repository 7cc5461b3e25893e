"""The Cloud Elements-style notification we POST to an instance's callback URL.

Shape (cloud-elements.md §2): {"message": {eventId, elementKey, instanceId,
instance_id, instanceName, instanceTags, userId, events: [...], raw}}.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import orjson

from workers.ecwid_events import EventMeaning, describe, describe_ion
from workers.inbox import InboxItem
from workers.instances import Instance


def strip_nulls(value: Any) -> Any:
    """Remove null members from objects, recursively, including objects inside arrays.

    Null *elements* of arrays are kept: dropping them would shift the positions of
    the others, which changes meaning (a null in a list is a value, not a missing key).
    """
    if isinstance(value, dict):
        return {key: strip_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [strip_nulls(item) for item in value]
    return value


def meaning(item: InboxItem) -> EventMeaning:
    if item.kind == "ion":
        return describe_ion(item.event_type, str(item.entity_id))
    return describe(item.event_type, item.entity_id, item.data)


# isoformat, not strftime: the same text at a fraction of the cost. Cached: it is spelled twice for
# every event (its event log summary, its notification), and events come in bursts of the same second.
@functools.lru_cache(maxsize=1024)
def iso_date(unix_seconds: int) -> str:
    """`2026-11-27T06:16:12Z`."""
    return datetime.fromtimestamp(int(unix_seconds), UTC).isoformat()[:19] + "Z"


def iso_date_ms(unix_ms: int) -> str:
    """`2026-11-27T06:16:12.345Z` (milliseconds truncated, not rounded)."""
    return datetime.fromtimestamp(unix_ms / 1000, UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def events(item: InboxItem) -> list[dict[str, Any]]:
    """The normalised `events` of the notification: one per webhook, up to 10 per polled batch."""
    if item.kind == "poll":
        return [
            {
                "elementKey": "ecwid",
                "hubKey": "ecommerce",
                "objectType": event["objectType"],
                "objectId": event["objectId"],
                "eventType": event["eventType"],
                "date": iso_date(int(event["updated"])),
            }
            for event in item.events
        ]
    what = meaning(item)
    return [
        {
            "elementKey": "ecwid",
            "hubKey": "ecommerce",
            "objectType": what.object_type,
            "objectId": what.object_id,
            "eventType": what.event_type,
            "date": iso_date(item.event_created),
        }
    ]


def build(item: InboxItem, instance: Instance) -> bytes:
    """The exact bytes to send (and sign) for `item` at `instance`. Pure; never raises
    for an item the receiver accepted."""
    message: dict[str, Any] = {
        "eventId": item.notification_id(instance.id),
        "elementKey": "ecwid",
        "instanceId": instance.id,
        "instance_id": instance.id,
        "instanceName": instance.name,
        "instanceTags": list(instance.tags),
        "userId": instance.owner,
        "events": events(item),
    }
    if instance.filter_nulls:
        message["raw"] = strip_nulls(orjson.loads(item.raw))
        return orjson.dumps(strip_nulls({"message": message}))
    # Splice Ecwid's body in byte for byte: re-serialising could change number spelling.
    head = orjson.dumps(message)
    return b'{"message":' + head[:-1] + b',"raw":' + item.raw.encode() + b"}}"
