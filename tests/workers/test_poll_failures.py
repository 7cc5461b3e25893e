"""How the poller treats Ecwid's refusals: 429, 402/403, repeated failures, and resuming."""

from __future__ import annotations

import time

import httpx
import redis

from tests.conftest import AUTH
from tests.support.fake_ecwid_api import TOKEN, FakeEcwidApi, Fault
from tests.support.polling import create_polling, poller, polling_since
from tests.support.servers import CallbackServer
from workers import keys
from workers.polling import poll_round
from workers.settings import Settings


def test_429_is_retried_after_retry_after_and_the_round_completes(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    ecwid_api.order("XJ12H", polling_since(redis_client, instance["id"]))
    ecwid_api.faults.append(Fault("/orders", 429, {"Retry-After": "1"}, {"errorMessage": "Too many requests"}))
    with poller(poll_settings) as ctx:
        outcome = poll_round(ctx, instance["id"], force=True)
    assert (outcome.outcome, outcome.forwarded) == ("ok", 1)
    refused, answered = ecwid_api.requests_to("/orders")
    assert answered.at - refused.at >= 0.95


def test_429_that_persists_fails_the_round_without_moving_the_cursor(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders,products"})
    ecwid_api.order("XJ12H", polling_since(redis_client, instance["id"]))
    ecwid_api.faults.append(Fault("/orders", 429, {"Retry-After": "1"}, times=3))
    with poller(poll_settings) as ctx:
        outcome = poll_round(ctx, instance["id"], force=True)
    assert outcome.outcome == "failed"
    assert outcome.detail == "GET /orders: 429 from Ecwid, Retry-After 1 s"
    assert len(ecwid_api.requests_to("/orders")) == 3  # the first try and two retries
    assert ecwid_api.requests_to("/products") == []  # the token is paused: no point asking more
    state = redis_client.hgetall(keys.poll_state(instance["id"]))
    assert b"cursor:orders" not in state and state[b"failures"] == b"1" and state[b"last_result"] == b"failed"
    assert redis_client.llen(keys.INBOX) == 0


def test_403_three_rounds_in_a_row_stops_polling_and_says_why_until_events_are_re_enabled(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(
        api, f"{callbacks.url}/hook", **{"event.objects": "orders", "ecwid.api.token": "secret_revoked"}
    )
    with poller(poll_settings) as ctx:
        outcomes = [poll_round(ctx, instance["id"], force=True) for _ in range(3)]
        assert [o.outcome for o in outcomes] == ["failed", "failed", "disabled"]
        reason = (
            "Ecwid refused access 3 rounds in a row: GET /orders: 403 from Ecwid (INVALID_API_TOKEN: Invalid token). "
            "Fix the token or its scopes (or drop the refused objects from event.objects), then enable events again "
            "to resume"
        )
        assert outcomes[2].detail == reason
        assert poll_round(ctx, instance["id"], force=True).detail == "polling disabled: " + reason
        assert len(ecwid_api.requests_to("/orders")) == 3

        listed = api.get("/instances/polling-disabled", headers={"Authorization": AUTH})
        assert listed.status_code == 200
        [shown] = listed.json()
        assert shown["id"] == instance["id"]
        assert shown["polling"]["active"] is False
        assert shown["polling"]["disabledReason"] == reason
        assert shown["polling"]["consecutiveFailures"] == 3
        assert redis_client.zscore(keys.POLL_DUE, instance["id"]) is None

        # The user fixes the token and enables events again: polling resumes.
        fixed = api.patch(
            f"/instances/{instance['id']}",
            headers={"Authorization": AUTH},
            json={
                "configuration": {"ecwid.api.token": next(iter(ecwid_api.tokens)), "event.notification.enabled": True}
            },
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["polling"] | {"lastRoundStarted": None, "lastRoundFinished": None} == {
            "active": True, "refreshIntervalMinutes": 15, "objects": ["orders"], "lastRoundStarted": None,
            "lastRoundFinished": None, "lastResult": "failed", "consecutiveFailures": 0, "disabledReason": None,
            "disabledDate": None, "lastError": "GET /orders: 403 from Ecwid (INVALID_API_TOKEN: Invalid token)",
        }  # fmt: skip
        assert api.get("/instances/polling-disabled", headers={"Authorization": AUTH}).json() == []
        assert redis_client.zscore(keys.POLL_DUE, instance["id"]) is not None
        assert poll_round(ctx, instance["id"], force=True).outcome == "ok"


def test_402_store_suspended_also_stops_polling(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    suspended = {"errorMessage": "Store is suspended", "errorCode": "STORE_IS_SUSPENDED"}
    ecwid_api.faults.append(Fault("/orders", 402, body=suspended, times=3))
    with poller(poll_settings) as ctx:
        outcomes = [poll_round(ctx, instance["id"], force=True) for _ in range(3)]
    assert [o.outcome for o in outcomes] == ["failed", "failed", "disabled"]
    assert "402 from Ecwid (STORE_IS_SUSPENDED: Store is suspended)" in outcomes[2].detail


def test_polling_stops_after_the_configured_number_of_consecutive_failures(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    assert poll_settings.poll_failure_limit == 3
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    ecwid_api.faults.append(Fault("/orders", 500, body={"errorMessage": "Internal error"}, times=5))
    with poller(poll_settings) as ctx:
        # A success in between resets the count: only consecutive failures add up.
        assert poll_round(ctx, instance["id"], force=True).outcome == "failed"
        ecwid_api.faults.clear()
        assert poll_round(ctx, instance["id"], force=True).outcome == "ok"
        ecwid_api.faults.append(Fault("/orders", 500, body={"errorMessage": "Internal error"}, times=5))
        outcomes = [poll_round(ctx, instance["id"], force=True) for _ in range(3)]
    assert [o.outcome for o in outcomes] == ["failed", "failed", "disabled"]
    assert outcomes[2].detail == "3 consecutive failed rounds; last: GET /orders: 500 from Ecwid (Internal error)"
    assert redis_client.zscore(keys.POLL_DISABLED, instance["id"]) is not None


def test_an_instance_that_would_poll_without_a_token_is_refused(api: httpx.Client, callbacks: CallbackServer) -> None:
    from tests.support.ecwid import STORE

    body = {"element": {"key": "ecwid"}, "configuration": {
        "ecwid.store.id": str(STORE), "ecwid.order.key": "k", "ecwid.product.key": "k",
        "event.notification.enabled": True, "event.notification.callback.url": f"{callbacks.url}/hook",
        "event.vendor.type": "polling"}}  # fmt: skip
    response = api.post("/instances", json=body, headers={"Authorization": AUTH})
    assert response.status_code == 400
    assert response.json()["message"] == (
        "event.vendor.type polling needs an Ecwid API token to poll with: set ecwid.api.token "
        "(the secret_... token of your custom Ecwid app), or connect the store with OAuth2"
    )
    assert api.get("/instances", headers={"Authorization": AUTH}).json() == []


def test_a_long_retry_after_ends_the_round_and_delays_the_next(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    ecwid_api.faults.append(Fault("/orders", 429, {"Retry-After": "900"}))
    with poller(poll_settings) as ctx:
        before = time.time()
        outcome = poll_round(ctx, instance["id"], force=True)
    assert (outcome.outcome, outcome.detail) == ("failed", "GET /orders: 429 from Ecwid, Retry-After 900 s")
    assert len(ecwid_api.requests_to("/orders")) == 1  # not held in the worker for 15 minutes
    due = redis_client.zscore(keys.POLL_DUE, instance["id"])
    assert due is not None and due >= before + 900


def test_a_token_echoed_in_an_error_is_masked(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    echo = {"errorCode": "INSUFFICIENT_APP_SCOPE", "errorMessage": f"Token {TOKEN} lacks read_orders"}
    ecwid_api.faults.append(Fault("/orders", 403, body=echo))
    with poller(poll_settings) as ctx:
        outcome = poll_round(ctx, instance["id"], force=True)
    assert outcome.detail == "GET /orders: 403 from Ecwid (INSUFFICIENT_APP_SCOPE: Token secret_*** lacks read_orders)"
    assert TOKEN.encode() not in b"".join(redis_client.hvals(keys.poll_state(instance["id"])))
    shown = api.get(f"/instances/{instance['id']}", headers={"Authorization": AUTH}).text
    assert TOKEN not in shown and "secret_***" in shown
