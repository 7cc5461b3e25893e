"""Decoding what Ecwid posts to /events/ecwid. Pure: bytes and strings in, values out.

Parsing is liberal where Ecwid is inconsistent (ecwid.md §1): `entityId` may be a
number or a string, `eventId` is not a strict UUID, the event type may come in the
query string, and unknown event types are accepted. It is strict where a mistake
would be dangerous: the fields that the signature covers must be exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from receiver.bodies import parse_json
from receiver.errors import BadRequest
from workers.configuration import DIGITS

MAX_ID = 256
MAX_DEPTH = 64  # deeper bodies could not be re-serialised inside the envelope
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z: later timestamps cannot be dated


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    event_created: int
    store_id: int
    event_type: str
    entity_id: Any
    data: dict[str, Any] | None


def _integer(value: Any) -> int | None:
    """A non-negative integer from a JSON number or digit string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**18 else None
    if isinstance(value, float) and value.is_integer() and 0 <= value < 1e18:
        return int(value)
    if isinstance(value, str) and DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    return None


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (a scalar is 0). Iterative: no recursion limit."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def query_event_type(query: Mapping[str, str]) -> str | None:
    """`?eventtype=` or `?eventType=` (any case), as Ecwid duplicates it into the URL."""
    for name, value in query.items():
        if name.lower() == "eventtype" and value.strip():
            return value.strip()
    return None


def parse_webhook(body: bytes, query: Mapping[str, str]) -> WebhookEvent:
    """Decode an Ecwid API v3 webhook; raises BadRequest naming every bad field."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise BadRequest("webhook body must be a JSON object")
    # Nesting cannot exceed the number of brackets: count them (C speed) before walking the tree.
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and depth(document) > MAX_DEPTH:
        raise BadRequest(f"webhook body nests deeper than {MAX_DEPTH} levels")
    errors = []
    event_id = document.get("eventId")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > MAX_ID:
        errors.append("eventId must be a non-empty string")
    created = _integer(document.get("eventCreated"))
    if created is None or created > LAST_SECOND:
        errors.append("eventCreated must be a unix timestamp")
    store_id = _integer(document.get("storeId"))
    if store_id is None or store_id == 0:
        errors.append("storeId must be a positive integer")
    event_type = document.get("eventType")
    if not isinstance(event_type, str) or not event_type.strip():
        event_type = query_event_type(query)
    if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > MAX_ID:
        errors.append("eventType is required (in the body or as ?eventtype=)")
    if errors:
        raise BadRequest("; ".join(errors))
    assert isinstance(event_id, str) and isinstance(event_type, str) and created is not None and store_id
    entity = document.get("entityId")
    data = document.get("data")
    return WebhookEvent(
        event_id=event_id,
        event_created=created,
        store_id=store_id,
        event_type=event_type.strip(),
        entity_id=entity if isinstance(entity, (int, float, str)) and not isinstance(entity, bool) else None,
        data=data if isinstance(data, dict) else None,
    )


@dataclass(frozen=True)
class IonPost:
    store_id: int
    event_type: str
    order_id: str
    event_created: int
    fields: dict[str, str]

    @property
    def event_id(self) -> str:
        """ION posts carry no id; a hash of the content identifies Ecwid's retries of one post."""
        canonical = "&".join(f"{k}={v}" for k, v in sorted(self.fields.items()))
        return "ion-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def parse_ion(body: bytes, received: float) -> IonPost:
    """Decode a legacy ION Cannon form post (ecwid.md §4); raises BadRequest."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("body is not a valid url-encoded form") from None
    fields = dict(pairs)
    missing = [name for name in ("owner_id", "event_type", "order_id") if not fields.get(name, "").strip()]
    if missing:
        raise BadRequest("ION post is missing: " + ", ".join(missing))
    store_id = _integer(fields["owner_id"])
    if not store_id:
        raise BadRequest("owner_id must be a positive integer (the store id)")
    return IonPost(
        store_id=store_id,
        event_type=fields["event_type"].strip(),
        order_id=fields["order_id"].strip(),
        event_created=_ion_date(fields.get("date", ""), received),
        fields=fields,
    )


def _ion_date(text: str, fallback: float) -> int:
    try:
        return int(datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return int(fallback)
