"""Known-answer tests for classifying polled Ecwid items and for the "already forwarded" markers."""

from __future__ import annotations

import pytest

from workers.changes import (
    OBJECTS,
    POLL,
    Change,
    batches,
    classify,
    classify_deleted,
    diff_categories,
    is_reported,
    next_marker,
    reported_change,
    timestamp,
    was_reported,
)
from workers.inbox import InboxItem, Kind

T = 1_700_000_000


def test_timestamps_in_every_form_ecwid_uses() -> None:
    assert timestamp(T) == T
    assert timestamp("2023-11-14 22:13:20 +0000") == T
    assert timestamp("2023-11-15 00:13:20 +0200") == T
    assert timestamp("2023-11-14 22:13:20") == T  # no zone: UTC
    assert timestamp("2023-11-14") == T - (22 * 3600 + 13 * 60 + 20)
    assert timestamp("yesterday") is None
    assert timestamp(None) is None
    assert timestamp(True) is None
    # Implausible values (a 15-digit "timestamp", infinity, year 9999) are not dates.
    assert timestamp(10**15) is None and timestamp(float("inf")) is None and timestamp("9999-01-01") is None
    assert timestamp(-1) is None


def test_created_equal_to_updated_within_tolerance_is_created() -> None:
    order = {"id": "XJ12H", "createTimestamp": T, "updateTimestamp": T + 5}
    assert classify(OBJECTS["orders"], order, since=T + 100, now=T + 200) == Change(
        "orders", "XJ12H", "CREATED", T + 5, order
    )


def test_created_before_updated_is_updated() -> None:
    order = {"id": "XJ12H", "createTimestamp": T, "updateTimestamp": T + 6}
    assert classify(OBJECTS["orders"], order, since=T + 1, now=T + 200).event_type == "UPDATED"  # type: ignore[union-attr]


def test_created_since_the_last_poll_is_created_even_if_updated_since() -> None:
    order = {"id": "XJ12H", "createTimestamp": T + 10, "updateTimestamp": T + 500}
    assert classify(OBJECTS["orders"], order, since=T, now=T + 900).event_type == "CREATED"  # type: ignore[union-attr]
    # Results posted from outside have no "last poll": only the tolerance rule applies.
    assert classify(OBJECTS["orders"], order, since=None, now=T + 900).event_type == "UPDATED"  # type: ignore[union-attr]


def test_customers_are_dated_by_strings_and_carts_by_cart_id() -> None:
    customer = {"id": 7, "registered": "2023-11-14 22:13:20 +0000", "updated": "2023-11-14 23:13:20 +0000"}
    assert classify(OBJECTS["customers"], customer, since=T, now=T) == Change(
        "customers", "7", "UPDATED", T + 3600, customer
    )
    cart = {"cartId": "6626E60A-A6F9-4CD5", "createTimestamp": T, "updateTimestamp": T}
    assert classify(OBJECTS["carts"], cart, since=T, now=T) == Change("carts", "6626E60A-A6F9-4CD5", "CREATED", T, cart)


def test_items_without_an_id_are_skipped_and_undated_ones_dated_now() -> None:
    assert classify(OBJECTS["orders"], {"createTimestamp": T}, since=T, now=T) is None
    assert classify(OBJECTS["orders"], {"id": ""}, since=T, now=T) is None
    assert classify(OBJECTS["orders"], ["not", "an", "object"], since=T, now=T) is None
    undated = classify(OBJECTS["products"], {"id": 5}, since=T, now=T + 9)
    assert undated == Change("products", "5", "UPDATED", T + 9, {"id": 5}, dated=False)


def test_deleted_records() -> None:
    assert classify_deleted(
        OBJECTS["orders"], {"id": 123, "orderId": "XJ12H", "date": "2023-11-14 22:13:20 +0000"}, T + 5
    ) == Change("orders", "XJ12H", "DELETED", T, {"id": 123, "orderId": "XJ12H", "date": "2023-11-14 22:13:20 +0000"})
    assert (
        classify_deleted(OBJECTS["products"], {"id": 77, "date": "2023-11-15 00:13:20 +0200"}, T + 5).object_id == "77"
    )  # type: ignore[union-attr]
    assert classify_deleted(OBJECTS["products"], {"date": "2023-11-14"}, T) is None


def test_category_diff_reports_created_updated_and_deleted_and_ignores_product_counts() -> None:
    first = [{"id": 1, "name": "Shoes", "productCount": 3}, {"id": 2, "name": "Hats", "productCount": 0}]
    changes, seen = diff_categories({}, first, T)
    assert [(c.object_id, c.event_type) for c in changes] == [("1", "CREATED"), ("2", "CREATED")]
    second = [{"id": 1, "name": "Shoes", "productCount": 9}, {"id": 3, "name": "Bags"}, {"id": 2, "name": "Caps"}]
    changes, seen2 = diff_categories(seen, second, T + 60)
    assert sorted((c.object_id, c.event_type, c.updated) for c in changes) == [
        ("2", "UPDATED", T + 60),
        ("3", "CREATED", T + 60),
    ]
    changes, _ = diff_categories(seen2, [{"id": 3, "name": "Bags"}], T + 120)
    assert sorted((c.object_id, c.event_type, c.raw["id"]) for c in changes) == [
        ("1", "DELETED", 1),
        ("2", "DELETED", 2),
    ]


def test_batches_hold_one_object_type_and_at_most_ten_events_oldest_first() -> None:
    changes = [Change("orders", str(n), "UPDATED", T + 30 - n, {}) for n in range(23)]
    changes.append(Change("products", "1", "CREATED", T, {}))
    groups = batches(changes)
    # Groups come in the order of their oldest change: the product (at T) before the orders.
    assert [len(g) for g in groups] == [1, 10, 10, 3]
    assert {c.object_type for c in groups[0]} == {"products"}
    assert [c.object_id for c in groups[1]][:3] == ["22", "21", "20"]


# marker, eventType, updated, source -> already reported?
MARKER_CASES = [
    (None, "UPDATED", T, POLL, False),
    (f"{T} UPDATED poll", "UPDATED", T, POLL, True),  # the overlap shows the same change again
    (f"{T} UPDATED poll", "UPDATED", T + 1, POLL, False),  # a newer change
    (f"{T} UPDATED poll", "UPDATED", T + 2, "nid-1", True),  # webhook for what the poll reported
    (f"{T} UPDATED poll", "UPDATED", T + 3, "nid-1", False),  # a later change, by webhook
    (f"{T} UPDATED nid-1", "UPDATED", T - 1, POLL, True),  # poll sees what the webhook delivered
    (f"{T} UPDATED nid-1", "UPDATED", T + 2, POLL, True),
    (f"{T} UPDATED nid-1", "UPDATED", T + 3, POLL, False),
    (f"{T} UPDATED nid-1", "UPDATED", T, "nid-2", False),  # two webhooks never suppress each other
    (f"{T} UPDATED nid-1", "UPDATED", T, "nid-1", False),  # a webhook's own retry
    (f"{T} UPDATED poll", "DELETED", T + 1, POLL, False),  # a deletion right after an update
    (f"{T} DELETED poll", "DELETED", T, "nid-1", True),
    (f"{T} DELETED nid-1", "DELETED", T + 1, POLL, True),
    (f"{T} DELETED poll", "UPDATED", T - 10, POLL, True),  # a stale listing after the deletion
]


@pytest.mark.parametrize(("marker", "event_type", "updated", "source", "expected"), MARKER_CASES)
def test_is_reported(marker: str | None, event_type: str, updated: int, source: str, expected: bool) -> None:
    assert is_reported(marker, event_type, updated, source) is expected


def test_next_marker_keeps_the_newest_change() -> None:
    assert next_marker(None, "CREATED", T, POLL) == f"{T} CREATED poll"
    assert next_marker(f"{T} UPDATED poll", "UPDATED", T - 5, "nid-1") is None
    assert next_marker(f"{T} UPDATED poll", "UPDATED", T + 5, "nid-1") == f"{T + 5} UPDATED nid-1"
    assert next_marker(f"{T} UPDATED poll", "DELETED", T - 5, POLL) == f"{T - 5} DELETED poll"
    assert was_reported(f"{T} UPDATED poll") and not was_reported(f"{T} DELETED poll") and not was_reported(None)


def _event(kind: Kind, event_type: str, entity_id: object, data: dict[str, object] | None = None) -> InboxItem:
    return InboxItem(kind=kind, store_id=1003, event_id="e-1", event_created=T, event_type=event_type,
                     entity_id=entity_id, data=data, instances=(1,), received=0.0, raw="{}")  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "event_type", "entity_id", "data", "expected"),
    [
        # An order is known to polling by its public id, which the webhook carries in data.orderId.
        ("webhook", "order.updated", 103878161, {"orderId": "XJ12H"}, Change("orders", "XJ12H", "UPDATED", T, None)),
        ("webhook", "order.created", 103878161, {"orderId": "XJ12H"}, Change("orders", "XJ12H", "CREATED", T, None)),
        ("webhook", "product.deleted", 7, None, Change("products", "7", "DELETED", T, None)),
        ("webhook", "customer.created", 9, None, Change("customers", "9", "CREATED", T, None)),
        (
            "webhook",
            "unfinished_order.updated",
            293225803,
            {"cartId": "320AB5DE"},
            Change("carts", "320AB5DE", "UPDATED", T, None),
        ),
        ("webhook", "application.installed", 1003, None, None),  # not an object polling reports
        ("webhook", "invoice.created", 5, {"orderId": "XJ12H"}, None),
        ("webhook", "product.inventory_changed", 7, None, None),  # not a change polling can see as such
        ("poll", "order.updated", 1, None, None),  # polling's own events are claimed when polled
        ("ion", "order.updated", 1, None, None),
    ],
)
def test_the_change_a_webhook_reports_that_polling_could_report_too(
    kind: Kind, event_type: str, entity_id: object, data: dict[str, object] | None, expected: Change | None
) -> None:
    assert reported_change(_event(kind, event_type, entity_id, data)) == expected
