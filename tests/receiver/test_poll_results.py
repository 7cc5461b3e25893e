"""POST /events/ecwid/{instanceId}?objectType=...: polling results from an outside scheduler."""

from __future__ import annotations

import time
from typing import Any

import httpx
import redis

from tests.conftest import WorkerProcess
from tests.support.ecwid import create_custom
from tests.support.polling import events
from tests.support.servers import CallbackServer
from workers import keys

T = 1_700_000_000


def listing(*items: dict[str, Any]) -> dict[str, Any]:
    return {"total": len(items), "count": len(items), "offset": 0, "limit": 100, "items": list(items)}


def post_results(api: httpx.Client, instance: dict[str, Any], body: Any, object_type: str = "orders",
                 token: str | None = None) -> httpx.Response:  # fmt: skip
    headers = {"Authorization": f"Element {token or instance['token']}"}
    return api.post(f"/events/ecwid/{instance['id']}?objectType={object_type}", json=body, headers=headers)


def test_results_are_classified_deduplicated_and_forwarded(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    new = {"id": "XJ12H", "createTimestamp": T, "updateTimestamp": T, "email": None}
    changed = {"id": "AB34C", "createTimestamp": T - 900, "updateTimestamp": T + 60}
    response = post_results(api, instance, listing(new, changed))
    assert response.status_code == 202, response.text
    assert response.json() | {"requestId": ""} == {
        "requestId": "",
        "instances": [instance["id"]],
        "items": 2,
        "message": "accepted; classified and forwarded shortly",
    }
    [notice] = callbacks.wait_for(1)
    assert events([notice]) == [("orders", "AB34C", "UPDATED"), ("orders", "XJ12H", "CREATED")]
    assert notice.json()["message"]["raw"] == [{"id": "XJ12H", "createTimestamp": T, "updateTimestamp": T}, changed]

    # The scheduler posts overlapping pages again: only the newer change goes out.
    again = {**changed, "updateTimestamp": T + 120}
    assert post_results(api, instance, listing(new, again)).status_code == 202
    [_, second] = callbacks.wait_for(2)
    assert events([second]) == [("orders", "AB34C", "UPDATED")]
    assert second.json()["message"]["events"][0]["date"] == "2023-11-14T22:15:20Z"
    worker.wait_for_log('"forwarded": 1')
    time.sleep(0.3)
    assert len(callbacks.received) == 2


def test_categories_are_compared_by_content(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    shoes, hats = {"id": 3, "name": "Shoes", "productCount": 1}, {"id": 4, "name": "Hats"}
    assert post_results(api, instance, listing(shoes, hats), "categories").status_code == 202
    assert events(callbacks.wait_for(1)) == [("categories", "3", "CREATED"), ("categories", "4", "CREATED")]
    # Same content (a product count is not an edit of the category), then a real edit.
    assert post_results(api, instance, listing({**shoes, "productCount": 9}, hats), "categories").status_code == 202
    worker.wait_for_log('"forwarded": 0')
    assert post_results(api, instance, listing({**hats, "name": "Caps"}), "categories").status_code == 202
    [_, edited] = callbacks.wait_for(2)
    assert events([edited]) == [("categories", "4", "UPDATED")]
    time.sleep(0.3)
    assert len(callbacks.received) == 2


def test_a_bad_or_missing_token_is_401_and_stores_nothing(
    api: httpx.Client, callbacks: CallbackServer, redis_client: redis.Redis
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    other = create_custom(api, f"{callbacks.url}/other")
    body = listing({"id": "XJ12H", "createTimestamp": T, "updateTimestamp": T})
    wrong = post_results(api, instance, body, token=other["token"])
    assert (wrong.status_code, wrong.json()["message"]) == (401, "the Element token does not belong to this instance")
    missing = api.post(f"/events/ecwid/{instance['id']}?objectType=orders", json=body)
    assert (missing.status_code, missing.json()["message"]) == (
        401, "polling results need Authorization: Element <instance token>"
    )  # fmt: skip
    unknown = post_results(api, {**instance, "id": 999}, body)
    assert unknown.status_code == 401
    assert redis_client.llen(keys.INBOX) == 0


def test_an_unknown_object_type_or_a_body_that_is_not_a_list_is_400(
    api: httpx.Client, callbacks: CallbackServer, redis_client: redis.Redis
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    body = listing({"id": "XJ12H"})
    response = post_results(api, instance, body, object_type="coupons")
    assert response.status_code == 400
    assert (
        response.json()["message"]
        == "objectType must be one of orders, products, customers, carts, categories, not 'coupons'"
    )
    assert set(response.json()) == {"requestId", "message"}
    for bad in ({"items": "nope"}, {"items": [1, 2]}, {"total": 0}):
        response = post_results(api, instance, bad)
        assert response.status_code == 400
        assert (
            response.json()["message"]
            == "body must be an Ecwid list response: an object with an items array of objects"
        )
    not_json = api.post(
        f"/events/ecwid/{instance['id']}?objectType=orders",
        content=b"{",
        headers={"Authorization": f"Element {instance['token']}", "Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["message"]) == (400, "body is not valid JSON (line 1, column 2)")
    assert redis_client.llen(keys.INBOX) == 0
