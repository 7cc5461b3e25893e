"""The instances API against a real uvicorn and a real Redis."""

from __future__ import annotations

import httpx
import redis

from tests.conftest import AUTH, ORG, OTHER_AUTH, USER
from tests.support.ecwid import create_custom

H = {"Authorization": AUTH}


def relay_keys(client: redis.Redis) -> list[bytes]:
    return sorted(client.keys("relay:*"))


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"requestId", "message"}
    assert len(body["requestId"]) == 24
    assert body["message"] == message


def test_create_custom_instance(api: httpx.Client, redis_client: redis.Redis) -> None:
    created = create_custom(api, "http://127.0.0.1:9/hook", **{"event.notification.signature.key": "k" * 20})
    assert created["id"] == 1
    assert created["name"] == "store 1003"
    assert len(created["token"]) >= 43  # 32 random bytes, url-safe base64
    assert created["element"]["key"] == "ecwid" and created["element"]["hub"] == "ecommerce"
    assert created["valid"] is True and created["disabled"] is False and created["eventsEnabled"] is True
    config = created["configuration"]
    assert config["ecwid.store.id"] == "1003"
    assert config["ecwid.order.key"] == "********" and config["ecwid.product.key"] == "********"
    assert config["event.notification.signature.key"] == "********"
    assert config["event.notification.enabled"] == "true"
    assert config["oauth.api.key"] is None
    assert all(value is None or isinstance(value, str) for value in config.values())
    assert created["createdDate"].endswith("Z")
    assert redis_client.smembers("relay:store:1003:instances") == {b"1"}
    fetched = api.get("/instances/1", headers=H).json()
    assert fetched == created


def test_missing_keys_are_all_named(api: httpx.Client, redis_client: redis.Redis) -> None:
    response = api.post("/instances", json={"element": {"key": "ecwid"}, "configuration": {}}, headers=H)
    assert_error(
        response,
        400,
        "missing required configuration: ecwid.store.id, ecwid.order.key, ecwid.product.key"
        " (or send providerData.code to authenticate with OAuth2)",
    )
    response = api.post(
        "/instances",
        json={"element": {"key": "ecwid"}, "providerData": {"code": "x"}, "configuration": {"oauth.api.key": "k"}},
        headers=H,
    )
    assert_error(response, 400, "missing required configuration: oauth.api.secret, oauth.callback.url")
    assert relay_keys(redis_client) == []


def test_bad_requests_store_nothing(api: httpx.Client, redis_client: redis.Redis) -> None:
    assert_error(
        api.post("/instances", content=b"{nope", headers={**H, "Content-Type": "application/json"}),
        400,
        "body is not valid JSON (line 1, column 2)",
    )
    assert_error(api.post("/instances", json=[1], headers=H), 400, "body must be a JSON object")
    assert_error(
        api.post("/instances", json={"element": {"key": "shopify"}}, headers=H),
        404,
        "element 'shopify' not found; this relay serves 'ecwid'",
    )
    assert_error(api.post("/instances", json={"configuration": {}}, headers=H), 400, "element.key is required")
    assert_error(
        api.post("/instances", content=b"a=b", headers={**H, "Content-Type": "text/plain"}),
        415,
        "send application/json, not text/plain",
    )
    bad_url = {
        "element": {"key": "ecwid"},
        "configuration": {
            "ecwid.store.id": "1",
            "ecwid.order.key": "a",
            "ecwid.product.key": "b",
            "event.notification.enabled": "true",
            "event.notification.callback.url": "http://u:p@example.com/",
        },
    }
    assert_error(
        api.post("/instances", json=bad_url, headers=H),
        400,
        "event.notification.callback.url must not contain a user name or password",
    )
    too_big = b'{"name":"' + b"x" * (1024 * 1024) + b'"}'
    assert_error(
        api.post("/instances", content=too_big, headers={**H, "Content-Type": "application/json"}),
        413,
        "body is larger than 1048576 bytes",
    )
    assert relay_keys(redis_client) == []


def test_authorization_is_required(api: httpx.Client, redis_client: redis.Redis) -> None:
    assert_error(
        api.get("/instances"), 401, "send Authorization: User <user secret>, Organization <organization secret>"
    )
    assert_error(
        api.get("/instances", headers={"Authorization": f"User {USER}"}),
        401,
        "Authorization must name both User and Organization secrets",
    )
    assert_error(
        api.get("/instances", headers={"Authorization": f"User {USER}, Organization wrong-org"}),
        401,
        "organization secret is not valid",
    )
    assert_error(
        api.get("/instances", headers={"Authorization": f"User nobody-at-all, Organization {ORG}"}),
        401,
        "user secret is not valid",
    )
    assert_error(
        api.post("/instances", json={}, headers={"Authorization": "Bearer x"}),
        401,
        "Authorization must name both User and Organization secrets",
    )
    assert relay_keys(redis_client) == []


def test_instances_belong_to_their_user(api: httpx.Client) -> None:
    mine = create_custom(api, None)
    theirs = create_custom(api, None, store_id=2000, auth=OTHER_AUTH)
    assert [i["id"] for i in api.get("/instances", headers=H).json()] == [mine["id"]]
    assert [i["id"] for i in api.get("/instances", headers={"Authorization": OTHER_AUTH}).json()] == [theirs["id"]]
    for method in ("GET", "DELETE"):
        assert_error(
            api.request(method, f"/instances/{theirs['id']}", headers=H), 404, f"instance {theirs['id']} not found"
        )
    assert_error(
        api.patch(f"/instances/{theirs['id']}", json={"name": "mine now"}, headers=H),
        404,
        f"instance {theirs['id']} not found",
    )
    assert api.get(f"/instances/{theirs['id']}", headers={"Authorization": OTHER_AUTH}).json()["name"] == "store 2000"


def test_patch_put_delete(api: httpx.Client, redis_client: redis.Redis) -> None:
    created = create_custom(api, "http://127.0.0.1:9/a")
    url = f"/instances/{created['id']}"
    patched = api.patch(
        url,
        json={"tags": ["x"], "configuration": {"event.notification.callback.url": "https://example.com/b"}},
        headers=H,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["tags"] == ["x"]
    assert body["configuration"]["event.notification.callback.url"] == "https://example.com/b"
    assert body["configuration"]["ecwid.order.key"] == "********"
    stored = redis_client.get("relay:instance:1")
    assert stored is not None and b'"ecwid.order.key":"order-key"' in stored

    # PUT replaces the configuration; masked secrets keep their stored value; the store can move.
    replaced = api.put(
        url,
        json={
            "name": "renamed",
            "configuration": {
                "ecwid.store.id": 2222,
                "ecwid.order.key": "********",
                "ecwid.product.key": "new-product-key",
            },
        },
        headers=H,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["name"] == "renamed"
    assert replaced.json()["tags"] == []
    assert replaced.json()["eventsEnabled"] is False
    assert redis_client.smembers("relay:store:1003:instances") == set()
    assert redis_client.smembers("relay:store:2222:instances") == {b"1"}
    stored = redis_client.get("relay:instance:1")
    assert stored is not None and b'"ecwid.order.key":"order-key"' in stored and b"new-product-key" in stored

    before = redis_client.get("relay:instance:1")
    assert_error(
        api.put(url, json={"configuration": {"ecwid.store.id": 1}}, headers=H),
        400,
        "missing required configuration: ecwid.order.key, ecwid.product.key "
        "(or send providerData.code to authenticate with OAuth2)",
    )
    assert_error(
        api.patch(url, json={"configuration": {"event.notification.enabled": True}}, headers=H),
        400,
        "event.notification.callback.url is required when event.notification.enabled is true",
    )
    assert redis_client.get("relay:instance:1") == before

    deleted = api.delete(url, headers=H)
    assert deleted.status_code == 200 and deleted.json() == {"id": 1, "deleted": True}
    assert_error(api.get(url, headers=H), 404, "instance 1 not found")
    assert relay_keys(redis_client) == [b"relay:instance-seq"]


def test_routing_errors_are_json(api: httpx.Client) -> None:
    assert_error(api.get("/nowhere"), 404, "no such resource")
    assert_error(api.get("/instances/abc", headers=H), 404, "no such resource")
    response = api.post("/instances/1", headers=H)
    assert_error(response, 405, "method POST not allowed here")
    assert response.headers["allow"]
    assert_error(api.post("/instances/", json={}, headers=H), 404, "no such resource")


def test_oauth_url(api: httpx.Client) -> None:
    response = api.get(
        "/elements/ecwid/oauth/url",
        params={"apiKey": "my-app", "apiSecret": "s", "callbackUrl": "https://app.example/cb", "state": "xyz"},
        headers=H,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["element"] == "ecwid"
    base, _, query = body["oauthUrl"].partition("?")
    assert base.endswith("/api/oauth/authorize")
    assert dict(httpx.QueryParams(query)) == {
        "client_id": "my-app",
        "redirect_uri": "https://app.example/cb",
        "response_type": "code",
        "scope": "read_store_profile read_catalog read_orders read_customers",
        "state": "xyz",
    }
    assert_error(
        api.get("/elements/ecwid/oauth/url", params={"apiKey": "k"}, headers=H),
        400,
        "missing query parameters: apiSecret, callbackUrl",
    )
    assert_error(
        api.get("/elements/shopify/oauth/url", headers=H), 404, "element 'shopify' not found; this relay serves 'ecwid'"
    )
