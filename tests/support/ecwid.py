"""Building Ecwid webhooks and instances the way Ecwid and API clients send them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import AUTH, CLIENT_SECRET
from workers.signatures import ecwid_signature

STORE = 1003


def webhook(
    event_id: str = "evt-1",
    *,
    store_id: int = STORE,
    event_type: str = "order.created",
    created: int = 1700000000,
    entity_id: Any = 42,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": event_id,
        "eventCreated": created,
        "storeId": store_id,
        "entityId": entity_id,
        "eventType": event_type,
    }
    if data is not None:
        body["data"] = data
    return body


def post_webhook(
    client: httpx.Client,
    body: dict[str, Any],
    *,
    secret: str | None = CLIENT_SECRET,
    path: str = "/events/ecwid",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST `body` signed the way Ecwid signs it (or unsigned with secret=None)."""
    sent = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
    if secret is not None:
        sent["X-Ecwid-Webhook-Signature"] = ecwid_signature(secret, str(body["eventCreated"]), str(body["eventId"]))
    return client.post(path, content=json.dumps(body), headers=sent)


def create_custom(
    api: httpx.Client, callback_url: str | None, *, store_id: int = STORE, auth: str = AUTH, **extra: Any
) -> dict[str, Any]:
    """Create an instance with legacy keys; events on when a callback URL is given."""
    configuration: dict[str, Any] = {
        "ecwid.store.id": str(store_id),
        "ecwid.order.key": "order-key",
        "ecwid.product.key": "product-key",
    }
    if callback_url is not None:
        configuration["event.notification.enabled"] = True
        configuration["event.notification.callback.url"] = callback_url
    configuration.update(extra)
    response = api.post(
        "/instances",
        json={"element": {"key": "ecwid"}, "name": f"store {store_id}", "configuration": configuration},
        headers={"Authorization": auth},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
