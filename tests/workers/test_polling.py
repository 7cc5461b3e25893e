"""Polling rounds against the fake Ecwid API, with a real worker forwarding to a real callback."""

from __future__ import annotations

import time

import httpx
import redis

from tests.conftest import AUTH, WorkerProcess
from tests.support.ecwid import post_webhook, webhook
from tests.support.fake_ecwid_api import TOKEN, FakeEcwidApi, Fault
from tests.support.polling import create_polling, events, poller, polling_since
from tests.support.servers import CallbackServer, FakeEcwidOAuth
from tests.test_end_to_end import create_oauth_instance
from workers import keys
from workers.polling import OVERLAP, poll_round
from workers.settings import Settings


def test_creates_updates_and_deletes_across_rounds_are_forwarded_once_each(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    poll_worker: WorkerProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders,products,customers"})
    since = polling_since(redis_client, instance["id"])
    ecwid_api.order("XJ12H", since, note=None)
    ecwid_api.product(10, since)
    ecwid_api.customer(7, since - 3600, since)  # registered before polling began, changed since

    with poller(poll_settings) as ctx:
        first = poll_round(ctx, instance["id"], force=True)
        assert (first.outcome, first.forwarded) == ("ok", 3)
        received = callbacks.wait_for(3)
        assert events(received) == [
            ("customers", "7", "UPDATED"), ("orders", "XJ12H", "CREATED"), ("products", "10", "CREATED"),
        ]  # fmt: skip
        [order_notice] = [r for r in received if r.json()["message"]["events"][0]["objectType"] == "orders"]
        message = order_notice.json()["message"]
        assert message["raw"] == [{k: v for k, v in ecwid_api.objects["orders"]["XJ12H"].items() if v is not None}]
        assert message["instanceId"] == instance["id"]
        assert message["events"][0]["date"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
        # The first round asks from when polling began; nothing older (no store dump).
        assert {s.params["updatedFrom"] for s in ecwid_api.requests_to("/orders")} == {str(since)}
        assert {s.authorization for s in ecwid_api.seen} == {f"Bearer {TOKEN}"}
        cursor = int(redis_client.hget(keys.poll_state(instance["id"]), "cursor:orders"))  # type: ignore[arg-type]

        ecwid_api.order("XJ12H", since, since + 60)
        ecwid_api.order("AB34C", since + 80)
        ecwid_api.delete("products", 10, since + 70)
        second = poll_round(ctx, instance["id"], force=True)
        assert (second.outcome, second.forwarded) == ("ok", 3)
        received = callbacks.wait_for(5)
        assert events(received[3:]) == [
            ("orders", "AB34C", "CREATED"), ("orders", "XJ12H", "UPDATED"), ("products", "10", "DELETED"),
        ]  # fmt: skip
        # Each query reaches back OVERLAP seconds before the cursor.
        assert ecwid_api.requests_to("/orders")[-1].params["updatedFrom"] == str(cursor - OVERLAP)

        # Everything is inside the overlap again: nothing is forwarded twice.
        third = poll_round(ctx, instance["id"], force=True)
        assert (third.outcome, third.forwarded) == ("ok", 0)
        assert redis_client.llen(keys.INBOX) == 0
    time.sleep(0.5)
    assert len(callbacks.received) == 5


def test_every_page_is_read_when_250_orders_changed(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    poll_worker: WorkerProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    since = polling_since(redis_client, instance["id"])
    for n in range(250):
        ecwid_api.order(f"ORD{n:03d}", since + n)
    with poller(poll_settings) as ctx:
        outcome = poll_round(ctx, instance["id"], force=True)
    assert (outcome.outcome, outcome.forwarded) == ("ok", 250)
    pages = [(s.params["offset"], s.params["limit"]) for s in ecwid_api.requests_to("/orders")]
    assert pages == [("0", "100"), ("90", "100"), ("180", "100")]  # each page overlaps the last by 10
    received = callbacks.wait_for(25, timeout=30)
    assert [len(r.json()["message"]["events"]) for r in received] == [10] * 25
    assert [e[1] for e in events(received)] == [f"ORD{n:03d}" for n in range(250)]
    assert len({r.json()["message"]["eventId"] for r in received}) == 25


def test_a_change_reported_by_webhook_and_by_poll_is_forwarded_once(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    poll_worker: WorkerProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    since = polling_since(redis_client, instance["id"])

    # Webhook first, then the poll sees the same order at the same update time.
    ecwid_api.order("XJ12H", since)
    hook = webhook("evt-1", created=since, event_type="order.created", data={"orderId": "XJ12H"})
    assert post_webhook(api, hook).status_code == 200
    callbacks.wait_for(1)
    with poller(poll_settings) as ctx:
        assert poll_round(ctx, instance["id"], force=True).forwarded == 0

        # Poll first, then Ecwid's webhook for the same change arrives a second later.
        ecwid_api.order("AB34C", since - 600, since + 30)
        assert poll_round(ctx, instance["id"], force=True).forwarded == 1
        callbacks.wait_for(2)
        late = webhook("evt-2", created=since + 31, event_type="order.updated", data={"orderId": "AB34C"})
        assert post_webhook(api, late).status_code == 200
        poll_worker.wait_for_log("the poller already reported this change")

        # A later change reported only by webhook still goes through.
        newer = webhook("evt-3", created=since + 90, event_type="order.updated", data={"orderId": "AB34C"})
        assert post_webhook(api, newer).status_code == 200
        received = callbacks.wait_for(3)
    assert events(received) == [
        ("orders", "AB34C", "UPDATED"),
        ("orders", "AB34C", "UPDATED"),
        ("orders", "XJ12H", "CREATED"),
    ]
    time.sleep(0.5)
    assert len(callbacks.received) == 3


def test_oauth_instances_poll_with_their_access_token(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    ecwid_api.tokens = {FakeEcwidOAuth.TOKEN}
    created = create_oauth_instance(api, f"{callbacks.url}/hook")
    assert created.status_code == 200, created.text
    instance_id = created.json()["id"]
    patched = api.patch(
        f"/instances/{instance_id}",
        headers={"Authorization": AUTH},
        json={"configuration": {"event.vendor.type": "polling", "event.objects": "orders"}},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["polling"]["active"] is True
    with poller(poll_settings) as ctx:
        assert poll_round(ctx, instance_id, force=True).outcome == "ok"
    assert {s.authorization for s in ecwid_api.seen} == {f"Bearer {FakeEcwidOAuth.TOKEN}"}


def test_a_listing_that_shifts_while_it_is_paged_loses_nothing(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    poll_worker: WorkerProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "products"})
    since = polling_since(redis_client, instance["id"])
    for n in range(250):
        ecwid_api.product(n, since)

    def edit(first: int, count: int) -> None:
        # Sorted by update time, an edit moves a product to the end: the rest move forward.
        for n in range(first, first + count):
            ecwid_api.product(n, since, since + 30)

    ecwid_api.faults += [
        Fault("/products", offset=90, action=lambda: edit(0, 3)),  # inside the page overlap
        Fault("/products", offset=180, action=lambda: edit(3, 15)),  # larger: the listing is read again
    ]
    with poller(poll_settings) as ctx:
        outcome = poll_round(ctx, instance["id"], force=True)
    assert (outcome.outcome, outcome.forwarded) == ("ok", 250)
    offsets = [s.params["offset"] for s in ecwid_api.requests_to("/products")]
    assert offsets == ["0", "90", "180", "0", "90", "180"]
    received = callbacks.wait_for(25, timeout=30)
    assert sorted(int(e[1]) for e in events(received)) == list(range(250))
    edited = [e for r in received for e in r.json()["message"]["events"] if int(e["objectId"]) < 18]
    assert {e["date"] for e in edited} == {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since + 30))}


def test_switching_polling_off_and_on_starts_afresh_without_replaying_the_gap(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    since = polling_since(redis_client, instance["id"])
    path, auth = f"/instances/{instance['id']}", {"Authorization": AUTH}
    with poller(poll_settings) as ctx:
        assert poll_round(ctx, instance["id"], force=True).outcome == "ok"
        off = api.patch(path, headers=auth, json={"configuration": {"event.notification.enabled": False}})
        assert off.status_code == 200 and "polling" in off.json() and off.json()["polling"]["active"] is False
        assert redis_client.zscore(keys.POLL_DUE, instance["id"]) is None
        ecwid_api.order("GAP01", since)  # changed while events were off
        time.sleep(1.1)
        on = api.patch(path, headers=auth, json={"configuration": {"event.notification.enabled": True}})
        assert on.status_code == 200
        assert polling_since(redis_client, instance["id"]) > since
        assert redis_client.hget(keys.poll_state(instance["id"]), "cursor:orders") is None
        outcome = poll_round(ctx, instance["id"], force=True)
    assert (outcome.outcome, outcome.forwarded) == ("ok", 0)
