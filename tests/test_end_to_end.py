"""The whole path with real parts: fake Ecwid OAuth, uvicorn, Redis, RQ worker, callback server."""

from __future__ import annotations

import time
from dataclasses import replace

import httpx
import redis

from tests.conftest import AUTH, WorkerProcess, running_receiver
from tests.support.ecwid import post_webhook, webhook
from tests.support.servers import CallbackServer, FakeEcwidOAuth, free_port
from workers.settings import Settings
from workers.signatures import elements_signature_matches

APP_KEY, APP_SECRET = "my-ecwid-app", "ecwid-app-client-secret-0123"
SIGNING_KEY = "callback-signing-key-0123456789"


def create_oauth_instance(api: httpx.Client, callback_url: str, code: str = "good-code") -> httpx.Response:
    return api.post(
        "/instances",
        headers={"Authorization": AUTH},
        json={
            "element": {"key": "ecwid"},
            "providerData": {"code": code},
            "name": "My Ecwid",
            "tags": ["shop-1"],
            "configuration": {
                "oauth.api.key": APP_KEY,
                "oauth.api.secret": APP_SECRET,
                "oauth.callback.url": "https://app.example/oauth/callback",
                "event.notification.enabled": "true",
                "event.notification.callback.url": callback_url,
                "event.notification.signature.key": SIGNING_KEY,
            },
        },
    )


def test_oauth_instance_receives_signed_order_created(
    api: httpx.Client, fake_ecwid: FakeEcwidOAuth, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    created = create_oauth_instance(api, f"{callbacks.url}/hook")
    assert created.status_code == 200, created.text
    instance = created.json()
    assert instance["configuration"]["ecwid.store.id"] == str(FakeEcwidOAuth.STORE_ID)
    assert instance["element"]["typeOauth"] is True
    assert FakeEcwidOAuth.TOKEN not in created.text
    [exchange] = fake_ecwid.received
    assert dict(httpx.QueryParams(exchange.body.decode())) == {
        "client_id": APP_KEY,
        "client_secret": APP_SECRET,
        "code": "good-code",
        "redirect_uri": "https://app.example/oauth/callback",
        "grant_type": "authorization_code",
    }

    body = webhook(data={"orderId": "XJ12H", "newPaymentStatus": "PAID", "oldPaymentStatus": None})
    sent_at = time.monotonic()
    response = post_webhook(api, body, secret=APP_SECRET)
    assert response.status_code == 200 and response.json()["message"] == "accepted"
    [delivery] = callbacks.wait_for(1, timeout=5)
    latency = delivery.at - sent_at
    print(f"\ningest-to-callback latency: {latency * 1000:.1f} ms")
    assert latency < 1.0

    assert delivery.path == "/hook"
    assert delivery.headers["content-type"] == "application/json"
    assert elements_signature_matches(delivery.headers["elements-webhook-signature"], SIGNING_KEY, delivery.body)
    message = delivery.json()["message"]
    assert delivery.headers["elements-webhook-id"] == message["eventId"]
    assert message["instanceId"] == message["instance_id"] == instance["id"]
    assert message["instanceName"] == "My Ecwid" and message["instanceTags"] == ["shop-1"]
    assert message["events"] == [
        {
            "elementKey": "ecwid",
            "hubKey": "ecommerce",
            "objectType": "orders",
            "objectId": "XJ12H",
            "eventType": "CREATED",
            "date": "2023-11-14T22:13:20Z",
        }
    ]
    assert message["raw"] == {**body, "data": {"orderId": "XJ12H", "newPaymentStatus": "PAID"}}
    assert b"null" not in delivery.body

    # Forged, unsigned and duplicate webhooks forward nothing more.
    assert post_webhook(api, webhook("evt-2"), secret="forged-secret").status_code == 401
    assert post_webhook(api, webhook("evt-3"), secret=None).status_code == 401
    assert post_webhook(api, body, secret=APP_SECRET).json()["message"].startswith("duplicate")
    time.sleep(1.0)
    assert len(callbacks.received) == 1

    logs = worker.logs()
    assert '"event": "delivery.succeeded"' in logs
    for secret in (APP_SECRET, SIGNING_KEY, FakeEcwidOAuth.TOKEN, instance["token"]):
        assert secret not in logs


def test_oauth_refusals(api: httpx.Client, fake_ecwid: FakeEcwidOAuth, redis_client: redis.Redis) -> None:
    refused = create_oauth_instance(api, "http://127.0.0.1:9/hook", code="bad-code")
    assert refused.status_code == 400
    assert refused.json()["message"] == "Ecwid refused the authorization code (400)"
    assert refused.json()["providerMessage"] == "authorization code expired or already used"
    broken = create_oauth_instance(api, "http://127.0.0.1:9/hook", code="broken")
    assert broken.status_code == 502
    assert broken.json()["providerMessage"] == "upstream trouble"
    assert redis_client.keys("relay:*") == []


def test_oauth_endpoint_unreachable(settings: Settings, redis_client: redis.Redis) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}/api/oauth"
    with running_receiver(replace(settings, ecwid_oauth_url=nothing_there)) as running, running.client() as api:
        unreachable = create_oauth_instance(api, "http://127.0.0.1:9/hook")
    assert unreachable.status_code == 502
    assert unreachable.json()["message"] == "could not reach Ecwid's token endpoint"
    assert redis_client.keys("relay:*") == []
