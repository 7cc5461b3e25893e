"""What a polled Ecwid list means: which entities changed, and how (pure functions).

Ecwid's REST API v3 answers list queries with `{"total", "count", "offset",
"limit", "items"}` (ecwid.md §5). Each kind of object names its id and its
timestamps differently; `OBJECTS` is the one table of those differences.

Classification follows Cloud Elements (cloud-elements.md §5): a record whose
created and updated times agree within `CREATED_TOLERANCE` is CREATED, one
changed after creation is UPDATED, one in a `/deleted` list is DELETED. We add
one rule: a record created after the previous poll is CREATED even if it was
also updated since, because the subscriber has never heard of it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from workers import envelope
from workers.inbox import InboxItem

CREATED_TOLERANCE = 5  # seconds
EVENTS_PER_NOTIFICATION = 10  # the Cloud Elements limit for polled events


@dataclass(frozen=True)
class ObjectKind:
    name: str  # the Cloud Elements objectType, and the Ecwid path
    id_field: str
    updated: tuple[str, ...]  # timestamp fields, best first: unix ints, then date strings
    created: tuple[str, ...]
    sort: str | None = None  # Ecwid's sortBy, where it has one, so paging walks oldest first
    has_deleted: bool = False  # Ecwid serves /{name}/deleted
    filtered: bool = True  # Ecwid filters it by updatedFrom (categories: no)


OBJECTS: dict[str, ObjectKind] = {
    kind.name: kind
    for kind in (
        ObjectKind("orders", "id", ("updateTimestamp", "updateDate"), ("createTimestamp", "createDate"),
                   has_deleted=True),
        ObjectKind("products", "id", ("updateTimestamp", "updated"), ("createTimestamp", "created"),
                   sort="UPDATED_TIME_ASC", has_deleted=True),
        ObjectKind("customers", "id", ("updateTimestamp", "updated"), ("createTimestamp", "registered"),
                   sort="UPDATED_DATE_ASC", has_deleted=True),
        ObjectKind("carts", "cartId", ("updateTimestamp", "updateDate"), ("createTimestamp", "createDate")),
        ObjectKind("categories", "id", (), (), filtered=False),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Change:
    object_type: str
    object_id: str
    event_type: str  # CREATED | UPDATED | DELETED
    updated: int  # unix seconds: when Ecwid says the change happened
    raw: Any  # the Ecwid item it came from, as decoded JSON
    # False when Ecwid gave no date and `updated` is only when we looked: markers cannot
    # order such a change, so it is never taken for one forwarded before (see is_reported).
    dated: bool = True

    def as_event(self) -> dict[str, Any]:
        return {"objectType": self.object_type, "objectId": self.object_id, "eventType": self.event_type,
                "updated": self.updated}  # fmt: skip


# Ecwid was founded in 2009; anything outside 2000..2100 is not a real date (and would not format).
_EARLIEST, _LATEST = 946_684_800, 4_102_444_800


def timestamp(value: object) -> int | None:
    """Unix seconds from an Ecwid timestamp (int) or date (`2024-05-01 05:26:28 +0000`);
    None if neither, or if the result is not a plausible date."""
    found = _timestamp(value)
    return found if found is not None and _EARLIEST <= found <= _LATEST else None


def _timestamp(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        for layout in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                parsed = datetime.strptime(text, layout)
            except ValueError:
                continue
            if parsed.tzinfo is None:  # Ecwid: dates without a zone are UTC
                parsed = parsed.replace(tzinfo=UTC)
            return int(parsed.timestamp())
    return None


def _first_time(item: Mapping[str, Any], fields: Sequence[str]) -> int | None:
    for name in fields:
        found = timestamp(item.get(name))
        if found is not None:
            return found
    return None


def _object_id(value: object) -> str | None:
    if value is None or isinstance(value, bool | dict | list) or value == "":
        return None
    return str(value)


def classify(kind: ObjectKind, item: object, since: int | None, now: int) -> Change | None:
    """The change one listed item reports, or None when it has no usable id.

    `since` is the previous poll's cursor (None for results posted from outside).
    An item without an updated time is dated `now`, so it is still forwarded.
    """
    if not isinstance(item, dict):
        return None
    object_id = _object_id(item.get(kind.id_field))
    if object_id is None:
        return None
    created = _first_time(item, kind.created)
    updated = _first_time(item, kind.updated)
    dated = updated is not None or created is not None
    if updated is None:
        updated = created if created is not None else now
    fresh = created is not None and (
        abs(updated - created) <= CREATED_TOLERANCE or (since is not None and created > since)
    )
    return Change(kind.name, object_id, "CREATED" if fresh else "UPDATED", updated, item, dated)


def classify_deleted(kind: ObjectKind, item: object, now: int) -> Change | None:
    """The DELETED change one `/deleted` record reports: `{"id", "date"}` (orders may add `orderId`)."""
    if not isinstance(item, dict):
        return None
    object_id = _object_id(item.get("orderId")) if kind.name == "orders" else None
    object_id = object_id or _object_id(item.get("id"))
    if object_id is None:
        return None
    when = timestamp(item.get("date"))
    return Change(kind.name, object_id, "DELETED", when if when is not None else now, item, when is not None)


# Counts Ecwid recomputes as products change; they are not edits of the category itself.
_VOLATILE_CATEGORY_FIELDS = ("productCount", "enabledProductCount", "productIds")


def fingerprint(item: Mapping[str, Any]) -> str:
    stable = {key: value for key, value in item.items() if key not in _VOLATILE_CATEGORY_FIELDS}
    return hashlib.sha256(orjson.dumps(stable, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def diff_categories(
    before: Mapping[str, str], items: Iterable[object], when: int, *, dated: bool = True
) -> tuple[list[Change], dict[str, str]]:
    """Compare a full category listing with the fingerprints seen last time.

    Returns the changes (new ids CREATED, changed ones UPDATED, vanished ones
    DELETED), all dated `when` (`dated` says whether that is Ecwid's date), and
    the fingerprints to remember now.
    """
    after: dict[str, str] = {}
    listed: dict[str, Any] = {}
    for item in items:
        if isinstance(item, dict) and (object_id := _object_id(item.get("id"))) is not None:
            after[object_id] = fingerprint(item)
            listed[object_id] = item
    changes = [
        Change(
            "categories", object_id, "CREATED" if object_id not in before else "UPDATED", when, listed[object_id], dated
        )
        for object_id, print_ in after.items()
        if before.get(object_id) != print_
    ]
    changes += [
        Change("categories", object_id, "DELETED", when, {"id": _number(object_id)}, dated)
        for object_id in before
        if object_id not in after
    ]
    return changes, after


def _number(text: str) -> int | str:
    return int(text) if text.isascii() and text.isdigit() else text


def batches(changes: Sequence[Change], size: int = EVENTS_PER_NOTIFICATION) -> list[list[Change]]:
    """Changes grouped into notifications: one object type each, oldest first, at most `size`."""
    grouped: dict[str, list[Change]] = {}
    for change in sorted(changes, key=lambda c: (c.updated, c.object_id)):
        grouped.setdefault(change.object_type, []).append(change)
    return [group[start : start + size] for group in grouped.values() for start in range(0, len(group), size)]


# -- "already forwarded?" markers ----------------------------------------------------
#
# For each (instance, entity) we remember the newest change forwarded, as
# "<unix seconds> <eventType> <source>", where source is "poll" or the webhook's
# notification id. Polls and webhooks both consult it, so one change reported by
# both is forwarded once, whichever comes first.

POLL = "poll"
# A webhook's eventCreated and the entity's updateTimestamp can differ by a second or two.
MARKER_SLACK = 2


def is_reported(marker: str | None, event_type: str, updated: int, source: str) -> bool:
    """True when `marker` shows that this change (or a newer one) was already forwarded.

    Two webhooks never suppress each other: Ecwid's eventId deduplication covers
    those, and two real changes can share a second. A webhook retrying its own
    delivery is not a duplicate of itself.
    """
    if marker is None:
        return False
    when, kind, who = _parse_marker(marker)
    if who != POLL and (source != POLL or who == source):
        return False
    if event_type == "DELETED":
        return kind == "DELETED"
    slack = 0 if (who == POLL and source == POLL) else MARKER_SLACK
    return updated <= when + slack


def was_reported(marker: str | None) -> bool:
    """True when the entity was forwarded before and not as deleted: it exists for the subscriber."""
    return marker is not None and _parse_marker(marker)[1] != "DELETED"


def next_marker(marker: str | None, event_type: str, updated: int, source: str) -> str | None:
    """The marker to store after forwarding this change; None to keep the current one."""
    if marker is not None:
        when, _, _ = _parse_marker(marker)
        if updated < when and event_type != "DELETED":
            return None
    return f"{updated} {event_type} {source}"


def _parse_marker(marker: str) -> tuple[int, str, str]:
    when, kind, who = marker.split(" ", 2)
    return int(when), kind, who


def reported_change(event: InboxItem) -> Change | None:
    """The change a webhook reports that polling could report too, or None (a polled event, an ION
    Cannon post, or an object or event polling never reports)."""
    what = envelope.meaning(event)
    if event.kind != "webhook" or what.object_type not in OBJECTS:
        return None
    if what.event_type not in ("CREATED", "UPDATED", "DELETED"):
        return None
    return Change(what.object_type, what.object_id, what.event_type, event.event_created, None)
