"""What an Ecwid webhook means in Cloud Elements terms: the one mapping table.

Ecwid names events `entity.action` (ecwid.md §1). Spellings vary (camelCase in the
docs, snake_case in Ecwid's own Java client), and new families keep appearing, so
lookup is by a normalised name and unknown events still map to something sensible
instead of being rejected.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Ecwid entity family -> (Cloud Elements objectType, key in `data` that holds the public id)
FAMILIES: dict[str, tuple[str, str | None]] = {
    "order": ("orders", "orderId"),
    "unfinished_order": ("carts", "cartId"),
    "product": ("products", None),
    "category": ("categories", None),
    "customer": ("customers", None),
    "customer_group": ("customerGroups", None),
    "discount_coupon": ("discountCoupons", None),
    "promotion": ("promotions", None),
    "product_class": ("productClasses", None),
    "review": ("reviews", None),
    "invoice": ("invoices", None),
    "size_chart": ("sizeCharts", None),
    "profile": ("profile", None),
    "application": ("application", None),
}

# Ecwid action -> Cloud Elements eventType. Anything else is UNKNOWN.
ACTIONS: dict[str, str] = {
    "created": "CREATED",
    "updated": "UPDATED",
    "deleted": "DELETED",
    "installed": "CREATED",
    "uninstalled": "DELETED",
    "subscription_status_changed": "UPDATED",
    "storage_changed": "UPDATED",
    "personal_data_removal_request": "UNKNOWN",
    "personal_data_export_request": "UNKNOWN",
}


@dataclass(frozen=True)
class EventMeaning:
    object_type: str
    event_type: str  # CREATED | UPDATED | DELETED | UNKNOWN
    object_id: str


_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.lru_cache(maxsize=256)  # a few dozen event types, each seen for every event
def snake(name: str) -> str:
    """`subscriptionStatusChanged` and `subscription_status_changed` both become the latter."""
    return _CAMEL_BOUNDARY.sub("_", name.strip()).lower().replace("-", "_")


def describe(event_type: str, entity_id: Any, data: Mapping[str, Any] | None) -> EventMeaning:
    """Map one Ecwid event to (objectType, eventType, objectId). Never raises."""
    family, _, action = snake(event_type).partition(".")
    object_type, id_field = FAMILIES.get(family, (family or "unknown", None))
    object_id = entity_id
    if id_field and data and data.get(id_field) not in (None, ""):
        object_id = data[id_field]
    return EventMeaning(
        object_type=object_type,
        event_type=ACTIONS.get(action, "UNKNOWN"),
        object_id="" if object_id is None else str(object_id),
    )


# Legacy ION Cannon form posts (ecwid.md §4) only ever described orders.
ION_ACTIONS = {"new_order": "CREATED", "order_status_change": "UPDATED"}


def describe_ion(event_type: str, order_id: str) -> EventMeaning:
    return EventMeaning("orders", ION_ACTIONS.get(event_type, "UNKNOWN"), order_id)
