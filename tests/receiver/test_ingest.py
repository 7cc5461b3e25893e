"""POST /events/ecwid: verification, parsing, routing and deduplication, checked in Redis."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import redis

from tests.conftest import AUTH, running_receiver
from tests.receiver.test_instances_api import assert_error
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import free_port
from workers.inbox import InboxItem
from workers.redis_server import RedisServer
from workers.settings import Settings

APP_SECRET = "ecwid-app-client-secret-A"


def inbox(client: redis.Redis) -> list[InboxItem]:
    return [InboxItem.loads(raw) for raw in reversed(client.lrange("relay:inbox", 0, -1))]


def oauth_like(api: httpx.Client, url: str, secret: str, store_id: int = 1003) -> dict[str, object]:
    """An instance that trusts its own app secret, like an OAuth2 one (no Ecwid round trip needed)."""
    return create_custom(api, url, store_id=store_id, **{"oauth.api.secret": secret})


def test_signed_webhook_is_queued_once(api: httpx.Client, redis_client: redis.Redis) -> None:
    instance = create_custom(api, "http://127.0.0.1:9/hook")
    body = webhook(data={"orderId": "XJ12H", "newPaymentStatus": "PAID"})
    first = post_webhook(api, body)
    assert first.status_code == 200, first.text
    assert first.json()["message"] == "accepted"
    assert first.json()["instances"] == [instance["id"]]
    second = post_webhook(api, body)
    assert second.status_code == 200
    assert second.json()["message"] == "duplicate eventId; already accepted, not forwarded again"
    items = inbox(redis_client)
    assert len(items) == 1
    assert items[0].raw == json.dumps(body)
    assert items[0].instances == (instance["id"],)
    assert items[0].event_created == 1700000000
    assert 90000 - 5 <= redis_client.ttl("relay:seen:evt-1") <= 90000


def test_missing_or_wrong_signature_is_401(api: httpx.Client, redis_client: redis.Redis) -> None:
    create_custom(api, "http://127.0.0.1:9/hook")
    oauth_like(api, "http://127.0.0.1:9/other", APP_SECRET, store_id=2000)
    assert_error(post_webhook(api, webhook(), secret=None), 401, "missing X-Ecwid-Webhook-Signature")
    wrong = "X-Ecwid-Webhook-Signature does not match any client secret for this store"
    assert_error(post_webhook(api, webhook(), secret="guessed-secret"), 401, wrong)
    # A valid signature from another store's app does not open this store.
    assert_error(post_webhook(api, webhook(store_id=1003), secret=APP_SECRET), 401, wrong)
    # A captured signature replayed with another eventId fails: eventId is signed.
    body = webhook("evt-original")
    signed = post_webhook(api, body)
    assert signed.status_code == 200
    forged = dict(body, eventId="evt-forged")
    headers = {
        "X-Ecwid-Webhook-Signature": signed.request.headers["x-ecwid-webhook-signature"],
        "Content-Type": "application/json",
    }
    assert_error(api.post("/events/ecwid", content=json.dumps(forged), headers=headers), 401, wrong)
    assert [item.event_id for item in inbox(redis_client)] == ["evt-original"]


def test_events_go_only_to_instances_that_trust_the_signer(api: httpx.Client, redis_client: redis.Redis) -> None:
    custom = create_custom(api, "http://127.0.0.1:9/custom")
    app_a = oauth_like(api, "http://127.0.0.1:9/a", APP_SECRET)
    app_b = oauth_like(api, "http://127.0.0.1:9/b", "ecwid-app-client-secret-B")
    create_custom(api, None)  # events off: never a target
    assert post_webhook(api, webhook("e-global")).json()["instances"] == [custom["id"]]
    assert post_webhook(api, webhook("e-a"), secret=APP_SECRET).json()["instances"] == [app_a["id"]]
    assert post_webhook(api, webhook("e-b"), secret="ecwid-app-client-secret-B").json()["instances"] == [app_b["id"]]
    assert len(inbox(redis_client)) == 3


def test_explicit_routing(api: httpx.Client, redis_client: redis.Redis) -> None:
    first = create_custom(api, "http://127.0.0.1:9/1")
    second = create_custom(api, "http://127.0.0.1:9/2")
    assert post_webhook(api, webhook("e-1"), path=f"/events/ecwid/{second['id']}").json()["instances"] == [second["id"]]
    routed = post_webhook(api, webhook("e-2"), headers={"Element-Instances": f"{first['id']}, {second['id']}"})
    assert routed.json()["instances"] == [first["id"], second["id"]]
    nowhere = post_webhook(api, webhook("e-3"), path="/events/ecwid/999")
    assert nowhere.status_code == 200
    assert nowhere.json()["message"] == "verified; no subscribed instance, not forwarded"
    assert_error(
        post_webhook(api, webhook("e-4"), headers={"Element-Instances": "1,x"}),
        400,
        "Element-Instances must be a comma-separated list of instance ids",
    )
    assert [item.event_id for item in inbox(redis_client)] == ["e-1", "e-2"]


def test_store_without_subscribers_gets_200(api: httpx.Client, redis_client: redis.Redis) -> None:
    response = post_webhook(api, webhook(store_id=777))
    assert response.status_code == 200
    assert response.json()["instances"] == []
    assert inbox(redis_client) == []


def test_liberal_parsing(api: httpx.Client, redis_client: redis.Redis) -> None:
    create_custom(api, "http://127.0.0.1:9/hook")
    odd = {
        "eventId": "80aece08-40e8-4145-8764-6c2f0d38678",
        "eventCreated": 1234567,
        "storeId": "1003",
        "entityId": "1003",
        "data": {"key": "k"},
    }
    response = post_webhook(api, odd, path="/events/ecwid?EventType=application.storageChanged")
    assert response.status_code == 200, response.text
    unknown = post_webhook(api, webhook("e-new", event_type="size_chart.created"))
    assert unknown.status_code == 200
    put = api.put(
        "/events/ecwid",
        content=json.dumps(webhook("e-put")),
        headers={
            "X-Ecwid-Webhook-Signature": post_webhook(api, webhook("e-put")).request.headers[
                "x-ecwid-webhook-signature"
            ]
        },
    )
    assert put.status_code == 200 and put.json()["message"].startswith("duplicate")
    items = inbox(redis_client)
    assert [(i.event_type, i.entity_id) for i in items] == [
        ("application.storageChanged", "1003"),
        ("size_chart.created", 42),
        ("order.created", 42),
    ]


def test_malformed_webhooks_are_400(api: httpx.Client, redis_client: redis.Redis) -> None:
    create_custom(api, "http://127.0.0.1:9/hook")
    headers = {"Content-Type": "application/json", "X-Ecwid-Webhook-Signature": "x"}
    assert_error(
        api.post("/events/ecwid", content=b"<xml/>", headers=headers), 400, "body is not valid JSON (line 1, column 1)"
    )
    assert_error(api.post("/events/ecwid", content=b"[]", headers=headers), 400, "webhook body must be a JSON object")
    assert_error(
        api.post("/events/ecwid", content=b"{}", headers=headers),
        400,
        "eventId must be a non-empty string; eventCreated must be a unix timestamp; "
        "storeId must be a positive integer; eventType is required (in the body or as ?eventtype=)",
    )
    huge = orjson.dumps(webhook(data={"blob": "x" * (1024 * 1024)}))
    assert_error(api.post("/events/ecwid", content=huge, headers=headers), 413, "body is larger than 1048576 bytes")
    assert_error(api.get("/events/ecwid"), 405, "method GET not allowed here")
    assert_error(api.post("/events/ecwid/", content=b"{}", headers=headers), 404, "no such resource")
    assert inbox(redis_client) == []


def test_ion_cannon_form_posts(api: httpx.Client, redis_client: redis.Redis) -> None:
    secret = "ion-shared-secret-0123"
    plain = create_custom(api, "http://127.0.0.1:9/plain")
    ion = create_custom(api, "http://127.0.0.1:9/ion", **{"ecwid.ion.enabled": "true", "ecwid.ion.secret": secret})
    form = {
        "owner_id": "1003",
        "event_type": "new_order",
        "order_id": "57",
        "date": "2015-01-02 03:04:05",
        "payment_status": "ACCEPTED",
        "fulfillment_status": "AWAITING_PROCESSING",
    }
    assert_error(
        api.post("/events/ecwid", data=form),
        401,
        "legacy ION posts must carry ?secret= (the instance's ecwid.ion.secret)",
    )
    assert_error(
        api.post("/events/ecwid?secret=wrong-secret-000000", data=form),
        401,
        "no instance of this store accepts ION posts with this secret",
    )
    accepted = api.post(f"/events/ecwid?secret={secret}", data=form)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["instances"] == [ion["id"]]
    again = api.post(f"/events/ecwid?secret={secret}", data=form)
    assert again.json()["message"].startswith("duplicate")
    assert_error(
        api.post(f"/events/ecwid?secret={secret}", data={"owner_id": "1003"}),
        400,
        "ION post is missing: event_type, order_id",
    )
    [item] = inbox(redis_client)
    assert item.kind == "ion" and item.entity_id == "57" and item.event_type == "new_order"
    assert item.event_created == 1420167845
    assert json.loads(item.raw) == form
    assert plain["id"] not in item.instances


def test_redis_down_is_503(settings: Settings, tmp_path: Path) -> None:
    """With Redis stopped, ingest answers 503 (never 200), and the instances API too."""
    own = RedisServer(tmp_path / "redis", port=free_port())
    own.start()
    try:
        with running_receiver(replace(settings, redis_url=own.url)) as running, running.client() as api:
            create_custom(api, "http://127.0.0.1:9/hook")
            own.stop()
            response = post_webhook(api, webhook())
            assert_error(response, 503, "storage is unavailable; nothing was stored, try again")
            assert response.elapsed.total_seconds() < 1.0
            listing = api.get("/instances", headers={"Authorization": AUTH})
            assert_error(listing, 503, "storage is unavailable; nothing was stored, try again")
            own.start()
            assert post_webhook(api, webhook()).json()["message"] == "accepted"
    finally:
        own.stop()


def test_a_redis_that_refuses_writes_is_503(api: httpx.Client, redis_client: redis.Redis) -> None:
    """Out of memory (maxmemory with noeviction) or too few replicas: nothing stored, Ecwid retries."""
    create_custom(api, "http://127.0.0.1:9/hook")
    limit = redis_client.config_get("maxmemory")["maxmemory"]
    redis_client.config_set("maxmemory", "1")
    try:
        response = post_webhook(api, webhook("oom-1"))
    finally:
        redis_client.config_set("maxmemory", limit)
    assert_error(response, 503, "storage is unavailable; nothing was stored, try again")
    redis_client.config_set("min-replicas-to-write", "1")
    try:
        response = post_webhook(api, webhook("noreplicas-1"))
    finally:
        redis_client.config_set("min-replicas-to-write", "0")
    assert_error(response, 503, "storage is unavailable; nothing was stored, try again")
    assert redis_client.llen("relay:inbox") == 0
    assert post_webhook(api, webhook("oom-1")).json()["message"] == "accepted"  # it was never marked as seen


def test_hostile_ids_and_digits_are_400_or_404(api: httpx.Client, redis_client: redis.Redis) -> None:
    """Unicode digits and absurdly long ids were once 500s."""
    signed = {"X-Ecwid-Webhook-Signature": "x", "Content-Type": "application/json"}
    superscript = {"eventId": "a", "eventCreated": 1, "storeId": "²", "eventType": "x"}
    assert_error(api.post("/events/ecwid", json=superscript, headers=signed), 400, "storeId must be a positive integer")
    assert_error(api.post("/events/ecwid?secret=s", data={"owner_id": "²", "event_type": "new_order", "order_id": "1"}),
                 400, "owner_id must be a positive integer (the store id)")  # fmt: skip
    assert_error(api.post("/events/ecwid/" + "9" * 5000, json={}, headers=signed), 404, "no such resource")
    assert_error(api.get("/instances/" + "9" * 5000, headers={"Authorization": AUTH}), 404, "no such resource")
    deep: dict[str, object] = {"leaf": 1}
    for _ in range(100):
        deep = {"d": deep}
    nested = webhook(data=deep)
    assert_error(post_webhook(api, nested), 400, "webhook body nests deeper than 64 levels")
    config = {"ecwid.store.id": "²", "ecwid.order.key": "a", "ecwid.product.key": "b",
              "event.notification.enabled": True, "event.notification.callback.url": "http://☃.com/"}  # fmt: skip
    response = api.post("/instances", json={"element": {"key": "ecwid"}, "configuration": config},
                        headers={"Authorization": AUTH})  # fmt: skip
    assert_error(response, 400, "ecwid.store.id must be a positive integer (the Ecwid store id); "
                 "event.notification.callback.url is not a valid URL")  # fmt: skip
    assert redis_client.keys("relay:*") == []


def test_explicit_routes_are_deduplicated_per_route(api: httpx.Client, redis_client: redis.Redis) -> None:
    first = create_custom(api, "http://127.0.0.1:9/1")
    second = create_custom(api, "http://127.0.0.1:9/2")
    to_first = post_webhook(api, webhook(), path=f"/events/ecwid/{first['id']}")
    to_second = post_webhook(api, webhook(), path=f"/events/ecwid/{second['id']}")
    assert to_first.json()["message"] == to_second.json()["message"] == "accepted"
    again = post_webhook(api, webhook(), path=f"/events/ecwid/{second['id']}")
    assert again.json()["message"].startswith("duplicate")
    # A captured webhook replayed under another storeId is a duplicate: eventId is what Ecwid signs.
    create_custom(api, "http://127.0.0.1:9/3", store_id=5000)
    assert post_webhook(api, webhook("evt-x")).json()["message"] == "accepted"
    assert post_webhook(api, webhook("evt-x", store_id=5000)).json()["message"].startswith("duplicate")
    assert [item.instances for item in inbox(redis_client)] == [
        (first["id"],),
        (second["id"],),
        (first["id"], second["id"]),
    ]


def test_cached_routing_never_routes_on_stale_instances(api: httpx.Client, redis_client: redis.Redis) -> None:
    """The receiver routes with instances it cached; every change in Redis is seen by the next event."""
    a = create_custom(api, "http://127.0.0.1:9/a")
    assert post_webhook(api, webhook("e1")).json()["instances"] == [a["id"]]  # now cached

    def patch(instance: dict[str, object], configuration: dict[str, object]) -> None:
        response = api.patch(f"/instances/{instance['id']}", json={"configuration": configuration},
                             headers={"Authorization": AUTH})  # fmt: skip
        assert response.status_code == 200, response.text

    # A now trusts only its own app secret: the global secret no longer reaches it.
    patch(a, {"oauth.api.secret": APP_SECRET})
    assert post_webhook(api, webhook("e2")).json()["message"] == "verified; no subscribed instance, not forwarded"
    assert post_webhook(api, webhook("e3"), secret=APP_SECRET).json()["instances"] == [a["id"]]
    # The secret is rotated: the old one is refused at once, the new one accepted.
    patch(a, {"oauth.api.secret": "ecwid-app-client-secret-rotated"})
    wrong = "X-Ecwid-Webhook-Signature does not match any client secret for this store"
    assert_error(post_webhook(api, webhook("e4"), secret=APP_SECRET), 401, wrong)
    assert post_webhook(api, webhook("e5"), secret="ecwid-app-client-secret-rotated").json()["instances"] == [a["id"]]
    # A new instance of the store gets the next event.
    b = create_custom(api, "http://127.0.0.1:9/b")
    assert post_webhook(api, webhook("e6")).json()["instances"] == [b["id"]]
    # A change written to Redis by anything else (another receiver process) is seen too.
    record = orjson.loads(redis_client.get(f"relay:instance:{b['id']}") or b"")
    record["configuration"]["event.notification.enabled"] = "false"
    redis_client.set(f"relay:instance:{b['id']}", orjson.dumps(record))
    assert post_webhook(api, webhook("e7")).json()["message"] == "verified; no subscribed instance, not forwarded"
    redis_client.srem("relay:store:1003:instances", a["id"], b["id"])
    assert post_webhook(api, webhook("e8"), secret="ecwid-app-client-secret-rotated").status_code == 401
    assert [item.event_id for item in inbox(redis_client)] == ["e1", "e3", "e5", "e6"]
