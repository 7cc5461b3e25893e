"""Configuration values: accepted spellings, defaults, and the errors for bad ones."""

from __future__ import annotations

from workers.configuration import cross_check, normalize, public_view, url_problem


def test_booleans_as_json_or_strings() -> None:
    values, errors = normalize(
        {"event.notification.enabled": True, "filter.response.nulls": "FALSE", "ecwid.ion.enabled": "1"}
    )
    assert errors == []
    assert values == {
        "event.notification.enabled": "true",
        "filter.response.nulls": "false",
        "ecwid.ion.enabled": "true",
    }


def test_normalised_values() -> None:
    values, errors = normalize(
        {
            "event.vendor.type": "webhooks",
            "event.poller.refresh_interval": 5,
            "ecwid.store.id": 1003,
            "event.objects": "orders, products,orders",
            "event.notification.callback.url": None,
        }
    )
    assert errors == []
    assert values == {
        "event.vendor.type": "webhook",
        "event.poller.refresh_interval": "5",
        "ecwid.store.id": "1003",
        "event.objects": "orders,products",
        "event.notification.callback.url": None,
    }


def test_every_error_is_reported() -> None:
    _, errors = normalize(
        {
            "event.notification.enabled": "maybe",
            "event.vendor.type": "carrier-pigeon",
            "event.poller.refresh_interval": "0",
            "ecwid.store.id": "abc",
            "event.objects": "orders,invoices",
            "event.notification.callback.url": "ftp://example.com",
            "typo.key": "1",
            "ecwid.order.key": 5,
        }
    )
    assert errors == [
        "unknown configuration keys: typo.key",
        "event.notification.enabled must be true or false",
        "event.vendor.type must be webhook or polling",
        "event.poller.refresh_interval must be a whole number of minutes, at least 1",
        "ecwid.store.id must be a positive integer (the Ecwid store id)",
        "event.objects must list some of orders,products,customers,categories,carts",
        "event.notification.callback.url must be an http or https URL",
        "ecwid.order.key must be a string",
    ]


def test_url_shapes() -> None:
    assert url_problem("https://example.com/hook?x=1") is None
    assert url_problem("http://user:pw@example.com/") == "must not contain a user name or password"
    assert url_problem("https:///nohost") == "must name a host"
    assert url_problem("https://example.com:99999/") == "is not a valid URL"
    assert url_problem("https://exa mple.com/") == "must not contain spaces or control characters"
    assert url_problem("javascript:alert(1)") == "must be an http or https URL"


def test_cross_checks() -> None:
    assert cross_check({"event.notification.enabled": "true"}) == [
        "event.notification.callback.url is required when event.notification.enabled is true"
    ]
    assert cross_check({"ecwid.ion.enabled": "true", "ecwid.ion.secret": "short"}) == [
        "ecwid.ion.secret of at least 16 characters is required when ecwid.ion.enabled is true"
    ]


def test_public_view_masks_secrets_and_shows_defaults() -> None:
    view = public_view({"ecwid.order.key": "k", "event.notification.signature.key": "s", "ecwid.store.id": "7"})
    assert view["ecwid.order.key"] == "********"
    assert view["event.notification.signature.key"] == "********"
    assert view["ecwid.store.id"] == "7"
    assert view["event.notification.enabled"] == "false"
    assert view["filter.response.nulls"] == "true"
    assert view["event.poller.refresh_interval"] == "15"
    assert view["event.notification.callback.url"] is None
    assert view["oauth.api.secret"] is None
