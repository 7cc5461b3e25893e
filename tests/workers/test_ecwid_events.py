"""The one mapping table from Ecwid event types to Cloud Elements events."""

from __future__ import annotations

import pytest

from workers.ecwid_events import EventMeaning, describe, describe_ion, snake


@pytest.mark.parametrize(
    ("event_type", "entity_id", "data", "expected"),
    [
        ("order.created", 103878161, {"orderId": "XJ12H"}, ("orders", "CREATED", "XJ12H")),
        ("order.updated", 103878161, {"orderId": "XJ12H", "newPaymentStatus": "PAID"}, ("orders", "UPDATED", "XJ12H")),
        ("order.deleted", 103, None, ("orders", "DELETED", "103")),
        (
            "unfinished_order.created",
            293225803,
            {"orderId": "RA1SD", "cartId": "320AB5DE"},
            ("carts", "CREATED", "320AB5DE"),
        ),
        ("unfinished_order.deleted", 293225803, None, ("carts", "DELETED", "293225803")),
        ("product.updated", 555, None, ("products", "UPDATED", "555")),
        ("category.deleted", 7, None, ("categories", "DELETED", "7")),
        ("customer.created", 9, {"customerEmail": "a@b.c"}, ("customers", "CREATED", "9")),
        ("customer_group.updated", 3, None, ("customerGroups", "UPDATED", "3")),
        ("discount_coupon.created", 4, None, ("discountCoupons", "CREATED", "4")),
        ("promotion.deleted", 5, {"version": 2}, ("promotions", "DELETED", "5")),
        ("product_class.updated", 6, None, ("productClasses", "UPDATED", "6")),
        ("review.created", 8, {"productId": 1}, ("reviews", "CREATED", "8")),
        ("invoice.created", 10, {"orderId": "XJ12H"}, ("invoices", "CREATED", "10")),
        ("profile.updated", 1003, None, ("profile", "UPDATED", "1003")),
        ("profile.subscriptionStatusChanged", 1003, None, ("profile", "UPDATED", "1003")),
        ("application.installed", "1003", None, ("application", "CREATED", "1003")),
        ("application.uninstalled", "1003", None, ("application", "DELETED", "1003")),
        ("application.subscription_status_changed", "1003", None, ("application", "UPDATED", "1003")),
        ("application.storageChanged", "1003", {"key": "k"}, ("application", "UPDATED", "1003")),
        ("customer.personalDataRemovalRequest", 9, None, ("customers", "UNKNOWN", "9")),
        ("size_chart.created", 11, None, ("sizeCharts", "CREATED", "11")),
        ("brand_new.thing_happened", 12, None, ("brand_new", "UNKNOWN", "12")),
        ("weird", None, None, ("weird", "UNKNOWN", "")),
    ],
)
def test_describe(
    event_type: str, entity_id: object, data: dict[str, object] | None, expected: tuple[str, str, str]
) -> None:
    meaning = describe(event_type, entity_id, data)
    assert (meaning.object_type, meaning.event_type, meaning.object_id) == expected


def test_snake_case_and_camel_case_agree() -> None:
    assert snake("subscriptionStatusChanged") == "subscription_status_changed"
    assert snake("application.storageChanged") == snake("application.storage_changed")


def test_ion_events_are_orders() -> None:
    assert describe_ion("new_order", "42") == EventMeaning("orders", "CREATED", "42")
    assert describe_ion("order_status_change", "42") == EventMeaning("orders", "UPDATED", "42")
    assert describe_ion("something_else", "42") == EventMeaning("orders", "UNKNOWN", "42")
