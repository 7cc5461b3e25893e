"""The event log and replay, over real HTTP: receiver, worker, Redis and a callback server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.conftest import AUTH, OTHER_AUTH, WorkerProcess
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Reply
from workers import keys
from workers.dispatcher import Dispatcher
from workers.settings import Settings


def story(api: httpx.Client, instance_id: int, event: str) -> dict[str, Any]:
    response = api.get(f"/instances/{instance_id}/events/{event}", headers={"Authorization": AUTH})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_for_status(api: httpx.Client, instance_id: int, event: str, status: str) -> dict[str, Any]:
    """Poll the log until the event has `status`. The record appears when the dispatcher turns the
    accepted event into a job, a few milliseconds after the 200; until then the answer is 404."""
    end = time.monotonic() + 15
    while True:
        response = api.get(f"/instances/{instance_id}/events/{event}", headers={"Authorization": AUTH})
        if response.status_code == 200 and response.json()["status"] == status:
            result: dict[str, Any] = response.json()
            return result
        assert response.status_code in (200, 404) and time.monotonic() < end, response.text
        time.sleep(0.05)


def test_retry_after_is_honoured_and_every_attempt_is_logged(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    # An HTTP date has whole seconds and is read about a second after this line: aim 4 s ahead.
    in_four = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 4))
    callbacks.script = [
        Reply(503, b"busy", {"Retry-After": "1"}),
        Reply(429, b"slow down", {"Retry-After": in_four}),
    ]
    assert post_webhook(api, webhook("evt-1")).status_code == 200
    first, second, third = callbacks.wait_for(3, timeout=15)
    assert 1.0 <= second.at - first.at <= 3.5  # Retry-After: 1 (never sooner), not the schedule's 4 s
    assert 1.5 <= third.at - second.at <= 6.0  # the HTTP date, not the schedule's 16 s
    found = wait_for_status(api, instance["id"], "evt-1", "NOTIFIED")  # Ecwid's eventId finds it
    assert found["id"] == first.headers["elements-webhook-id"]
    assert found["eventId"] == "evt-1" and found["instanceId"] == instance["id"]
    assert found["events"] == [{"elementKey": "ecwid", "hubKey": "ecommerce", "objectType": "orders",
                                "objectId": "42", "eventType": "CREATED", "date": "2023-11-14T22:13:20Z"}]  # fmt: skip
    assert [(a["status"], a["error"], a["body"]) for a in found["attempts"]] == [
        (503, None, "busy"), (429, None, "slow down"), (200, None, "{}"),
    ]  # fmt: skip
    assert all(isinstance(a["ms"], float) and a["ms"] >= 0 for a in found["attempts"])
    assert found["reason"] is None and found["nextAttemptDate"] is None and found["replays"] == 0
    # providerData is what Ecwid sent, as a string (Cloud Elements' event log shape).
    assert json.loads(found["providerData"]) == first.json()["message"]["raw"]
    assert story(api, instance["id"], found["id"]) == found  # the notification id finds it too


def test_a_retry_in_waiting_shows_when_the_next_attempt_is(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(500, b"down")]
    before = time.time()
    assert post_webhook(api, webhook("evt-1")).status_code == 200
    found = wait_for_status(api, instance["id"], "evt-1", "DISPATCHED")
    assert found["reason"] == "HTTP 500"
    next_at = time.mktime(time.strptime(found["nextAttemptDate"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before + 3 <= next_at <= time.time() + 5  # the schedule's first delay: 4 s


def test_a_400_fails_at_once_and_a_replay_sends_the_same_notification_again(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(400, b'{"error": "unknown field"}')]
    assert post_webhook(api, webhook("evt-1")).status_code == 200
    found = wait_for_status(api, instance["id"], "evt-1", "FAILED")
    assert found["reason"] == "HTTP 400: the endpoint rejected the notification"
    assert [a["status"] for a in found["attempts"]] == [400]
    assert redis_client.zcard("rq:scheduled:relay-deliveries") == 0

    replayed = api.post(f"/instances/{instance['id']}/events/evt-1/replay", headers={"Authorization": AUTH})
    assert replayed.status_code == 202
    assert replayed.json()["queued"] == 1 and replayed.json()["ids"] == [found["id"]]
    first, again = callbacks.wait_for(2)
    assert again.headers["elements-webhook-id"] == first.headers["elements-webhook-id"] == found["id"]
    assert again.body == first.body
    after = wait_for_status(api, instance["id"], "evt-1", "NOTIFIED")
    assert after["replays"] == 1 and [a["status"] for a in after["attempts"]] == [400, 200]


def test_bulk_replay_is_bounded_and_goes_on_from_its_cursor(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(422, b"no") for _ in range(3)]
    for n in range(3):
        assert post_webhook(api, webhook(f"evt-{n}")).status_code == 200
        wait_for_status(api, instance["id"], f"evt-{n}", "FAILED")
    path, auth = f"/instances/{instance['id']}/events/replay", {"Authorization": AUTH}
    busy = api.post(path + "?status=DISPATCHED", headers=auth)
    assert (busy.status_code, busy.json()["message"]) == (
        400, "only finished deliveries can be replayed: status among NOTIFIED, FAILED, SKIPPED"
    )  # fmt: skip
    first = api.post(path + "?limit=2", headers=auth)
    assert first.status_code == 202 and first.json()["queued"] == 2 and first.json()["nextPage"]
    rest = api.post(path + f"?limit=2&nextPage={first.json()['nextPage']}", headers=auth)
    assert rest.json()["queued"] == 1 and rest.json()["nextPage"] is None
    assert set(first.json()["ids"]) | set(rest.json()["ids"]) == {
        story(api, instance["id"], f"evt-{n}")["id"] for n in range(3)
    }
    received = callbacks.wait_for(6)
    assert sorted(r.headers["elements-webhook-id"] for r in received[3:]) == sorted(
        r.headers["elements-webhook-id"] for r in received[:3]
    )


def test_the_log_pages_newest_first_filters_and_refuses_bad_queries(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(200), Reply(404, b"gone?"), Reply(200), Reply(200)]
    for n in range(4):
        assert post_webhook(api, webhook(f"evt-{n}", created=1_700_000_000 + n)).status_code == 200
        callbacks.wait_for(n + 1)
    wait_for_status(api, instance["id"], "evt-3", "NOTIFIED")
    base, auth = f"/instances/{instance['id']}/events", {"Authorization": AUTH}
    page = api.get(base + "?pageSize=3", headers=auth)
    assert [e["eventId"] for e in page.json()] == ["evt-3", "evt-2", "evt-1"]
    rest = api.get(base + f"?pageSize=3&nextPage={page.headers['elements-next-page-token']}", headers=auth)
    assert [e["eventId"] for e in rest.json()] == ["evt-0"] and "elements-next-page-token" not in rest.headers
    failed = api.get(base + "?status=FAILED", headers=auth).json()
    assert [(e["eventId"], e["reason"]) for e in failed] == [
        ("evt-1", "HTTP 404: the endpoint rejected the notification")
    ]
    future = api.get(base + f"?from={int(time.time()) + 60}", headers=auth)
    assert future.status_code == 200 and future.json() == []
    for query, message in [
        ("?status=LOST", "status must be among RECEIVED, DISPATCHED, PAUSED, NOTIFIED, FAILED, SKIPPED, not 'LOST'"),
        ("?pageSize=0", "pageSize must be a whole number from 1 to 200"),
        ("?from=yesterday", "from must be an ISO 8601 time or unix seconds"),
        ("?nextPage=garbage", "nextPage is not a cursor this API returned"),
        ("?from=" + "9" * 4400, "from must be an ISO 8601 time or unix seconds"),  # past Python's int limit
        ("?nextPage=" + "9" * 4400 + ":x", "nextPage is not a cursor this API returned"),
        ("?to=" + "9" * 16, "to must be an ISO 8601 time or unix seconds"),
    ]:
        response = api.get(base + query, headers=auth)
        assert (response.status_code, response.json()["message"]) == (400, message)
    assert api.get(base, headers={"Authorization": OTHER_AUTH}).status_code == 404
    assert api.get(base + "/evt-0", headers={"Authorization": OTHER_AUTH}).status_code == 404
    missing = api.get(base + "/no-such-event", headers=auth)
    assert (missing.status_code, missing.json()["message"]) == (
        404, f"no event 'no-such-event' in instance {instance['id']}'s log (entries are kept for 7 days)"
    )  # fmt: skip
    in_flight = api.post(base + "/evt-0/replay", headers={"Authorization": OTHER_AUTH})
    assert in_flight.status_code == 404


def test_a_queued_event_is_stored_once_and_shows_its_payload_from_its_first_attempt(
    api: httpx.Client, callbacks: CallbackServer, redis_client: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """While it waits in its callback URL's pending list, an event's payload is there only (one copy
    of a queued event): the log shows its summary and no providerData. From the first decision on it,
    the log record keeps the payload (for replay)."""
    instance = create_custom(api, f"{callbacks.url}/hook")
    queue = Queue(keys.DELIVERY_QUEUE, connection=redis_client, serializer=JSONSerializer)
    dispatcher = Dispatcher(redis_client, queue, "test-dispatcher", retention=3600)
    body = webhook("q-1", entity_id=7)
    assert post_webhook(api, body).status_code == 200
    assert dispatcher.step(block=1.0) == 1
    queued = story(api, instance["id"], "q-1")
    assert (queued["status"], queued["attempts"], queued["providerData"]) == ("RECEIVED", [], None)
    assert [(e["objectType"], e["objectId"]) for e in queued["events"]] == [("orders", "7")]
    assert redis_client.hexists(keys.delivery(queued["id"]), "item") == 0
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        callbacks.wait_for(1)
        delivered = wait_for_status(api, instance["id"], "q-1", "NOTIFIED")
    finally:
        worker.stop()
    assert json.loads(delivered["providerData"]) == body
