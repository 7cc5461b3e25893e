"""The inbox: what the receiver hands to the workers, and its wire format.

The receiver appends one item per accepted Ecwid event to the Redis list
`relay:inbox` (atomically with the dedup marker, see receiver/ingest.py). The
dispatcher (workers/dispatcher.py) turns each item into one RQ delivery job per
target instance. An item is a small JSON document; `raw` is the body exactly as
Ecwid sent it.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import orjson

# webhook, ion: one Ecwid event. poll: up to 10 polled changes, `events` lists them and
# `raw` is the JSON array of the Ecwid items they came from. results: an outside
# scheduler's list response for `event_type` (an objectType), still to be classified.
# replay: `raw` is a JSON array of notification ids of `instances[0]` to send again.
Kind = Literal["webhook", "ion", "poll", "results", "replay"]

# Namespace for notification ids, so the same (event, instance) always gets the same id.
_NOTIFICATION_NS = uuid.UUID("6f1c3b1e-2a6e-4d53-9a8e-0c1e5d7a9b42")


# Large enough to hold a dispatcher's lead over its runners (the same ids, minutes apart).
@functools.lru_cache(maxsize=16384)
def notification_id(store_id: int, event_id: str, instance_id: int) -> str:
    """The notification id of Ecwid event `event_id` of a store at an instance: the UUID 5 that
    `uuid.uuid5` makes, spelled out here (and cached: a delivery asks for it several times) because
    `uuid.UUID`'s constructor cost more than the hash."""
    name = f"{store_id}:{event_id}:{instance_id}".encode()
    digest = bytearray(hashlib.sha1(_NOTIFICATION_NS.bytes + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def webhook_data(raw: str) -> dict[str, Any] | None:
    """The `data` object of an Ecwid webhook body, as ingest read it (None when absent)."""
    data = orjson.loads(raw).get("data")
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class InboxItem:
    kind: Kind
    store_id: int
    event_id: str
    event_created: int
    event_type: str
    entity_id: Any
    data: dict[str, Any] | None
    instances: tuple[int, ...]
    received: float
    raw: str
    events: tuple[dict[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """Identifies the Ecwid event: the dedup key, and the seed of notification ids."""
        return f"{self.store_id}:{self.event_id}"

    def notification_id(self, instance_id: int) -> str:
        """`Elements-Webhook-Id` for this event at this instance: stable across retries."""
        return notification_id(self.store_id, self.event_id, instance_id)

    def dumps(self) -> bytes:
        """The wire form. A webhook's `data` is left out: it is `raw`'s, and `loads` reads it
        back from there, so a queued event holds its body once, not twice."""
        return orjson.dumps(
            {
                "v": 1,
                "kind": self.kind,
                "storeId": self.store_id,
                "eventId": self.event_id,
                "eventCreated": self.event_created,
                "eventType": self.event_type,
                "entityId": self.entity_id,
                **({} if self.kind == "webhook" else {"data": self.data}),
                "instances": list(self.instances),
                "received": self.received,
                "raw": self.raw,
                **({"events": list(self.events)} if self.events else {}),
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> InboxItem:
        """Parse an item; raises ValueError (or KeyError) for a malformed one."""
        doc = orjson.loads(raw)
        if doc.get("v") != 1:
            raise ValueError(f"unsupported inbox item version {doc.get('v')!r}")
        data = doc["data"] if "data" in doc else webhook_data(str(doc["raw"]))
        return cls(
            kind=doc["kind"],
            store_id=int(doc["storeId"]),
            event_id=str(doc["eventId"]),
            event_created=int(doc["eventCreated"]),
            event_type=str(doc["eventType"]),
            entity_id=doc.get("entityId"),
            data=data,
            instances=tuple(int(i) for i in doc["instances"]),
            received=float(doc["received"]),
            raw=str(doc["raw"]),
            events=tuple(doc.get("events", ())),
        )
