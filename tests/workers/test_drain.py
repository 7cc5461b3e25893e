"""Pause, buffer, probe and drain over real HTTP: receiver, worker process, Redis, callback servers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import AUTH, WorkerProcess
from tests.receiver.test_events_api import story, wait_for_status
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Received, Reply
from workers import keys


class FlakyEndpoint(CallbackServer):
    """Answers 503 while `healthy` is clear, 200 once it is set; counts what it accepted."""

    def __init__(self) -> None:
        self.healthy = threading.Event()
        self.accepted: list[Received] = []
        super().__init__()

    def reply_for(self, record: Received) -> Reply:
        scripted = super().reply_for(record)
        if not self.healthy.is_set():
            return Reply(503, b"down for maintenance")
        if 200 <= scripted.status < 300:
            self.accepted.append(record)
        return scripted


@pytest.fixture
def flaky() -> Iterator[FlakyEndpoint]:
    server = FlakyEndpoint()
    yield server
    server.close()


def delivery(api: httpx.Client, instance_id: int) -> dict[str, Any]:
    response = api.get(f"/instances/{instance_id}", headers={"Authorization": AUTH})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["delivery"]
    return result


def wait_until(check: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.1)


def test_failures_in_a_row_pause_the_instance_buffer_events_and_a_probe_drains_them(
    api: httpx.Client, flaky: FlakyEndpoint, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{flaky.url}/hook", **{"event.notification.pause.threshold": 3})
    assert delivery(api, instance["id"]) == {
        "state": "active", "paused": False, "since": None, "reason": None, "resumesByHand": False,
        "nextProbeDate": None, "consecutiveFailures": 0, "buffered": 0, "concurrency": 4, "pauseThreshold": 3,
    }  # fmt: skip
    for n in range(1, 4):
        assert post_webhook(api, webhook(f"e{n}")).status_code == 200
    wait_until(lambda: delivery(api, instance["id"])["paused"])
    paused = delivery(api, instance["id"])
    assert paused["state"] == "paused" and paused["resumesByHand"] is False and paused["since"] is not None
    assert paused["reason"] == "3 failed attempts in a row; last: HTTP 503"
    # Accepted while paused: buffered, not sent, not dropped.
    for n in range(4, 11):
        assert post_webhook(api, webhook(f"e{n}")).status_code == 200
    wait_until(lambda: delivery(api, instance["id"])["buffered"] == 10)  # e1 and e2 join at their retry
    assert wait_for_status(api, instance["id"], "e7", "PAUSED")["reason"] == (
        "deliveries to this instance are paused; the event waits in its buffer"
    )
    sent_while_down = len(flaky.received)
    assert 3 <= sent_while_down <= 5  # three failures, then probes only (one or two so far)
    assert flaky.accepted == []

    flaky.healthy.set()
    wait_until(lambda: len(flaky.accepted) >= 10, timeout=40)
    wait_until(lambda: delivery(api, instance["id"])["state"] == "active")
    time.sleep(1.0)  # anything sent twice would arrive by now
    ids = Counter(record.json()["message"]["raw"]["eventId"] for record in flaky.accepted)
    assert ids == Counter({f"e{n}": 1 for n in range(1, 11)})
    assert {r.headers["elements-webhook-id"] for r in flaky.accepted} == {
        story(api, instance["id"], f"e{n}")["id"] for n in range(1, 11)
    }
    assert all(story(api, instance["id"], f"e{n}")["status"] == "NOTIFIED" for n in range(1, 11))
    after = delivery(api, instance["id"])
    assert (after["paused"], after["buffered"], after["consecutiveFailures"]) == (False, 0, 0)


def test_410_pauses_until_resumed_by_hand(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(410, b"this hook was removed")]
    assert post_webhook(api, webhook("g1")).status_code == 200
    assert wait_for_status(api, instance["id"], "g1", "PAUSED")["attempts"][0]["status"] == 410
    assert post_webhook(api, webhook("g2")).status_code == 200
    wait_for_status(api, instance["id"], "g2", "PAUSED")
    state = delivery(api, instance["id"])
    assert state["paused"] and state["resumesByHand"] and state["buffered"] == 2
    assert state["reason"] == ("HTTP 410 Gone: the endpoint says it no longer exists; resume by hand once it is back")
    assert state["nextProbeDate"] is None and redis_client.zscore(keys.DELIVERY_DUE, instance["id"]) is None
    time.sleep(2.0)  # two dispatcher checks of what is due: nothing may be probed
    assert len(callbacks.received) == 1

    resumed = api.patch(f"/instances/{instance['id']}", json={"delivery": {"paused": False}},
                        headers={"Authorization": AUTH})  # fmt: skip
    assert resumed.status_code == 200 and resumed.json()["delivery"]["state"] == "draining"
    callbacks.wait_for(3)
    assert [r.json()["message"]["raw"]["eventId"] for r in callbacks.received] == ["g1", "g1", "g2"]
    wait_for_status(api, instance["id"], "g2", "NOTIFIED")
    wait_until(lambda: delivery(api, instance["id"])["state"] == "active")


def test_pause_and_resume_by_hand(api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    path, headers = f"/instances/{instance['id']}", {"Authorization": AUTH}
    paused = api.patch(path, json={"delivery": {"paused": True}}, headers=headers)
    assert paused.status_code == 200
    assert (paused.json()["delivery"]["state"], paused.json()["delivery"]["reason"]) == (
        "paused", "paused by hand (PATCH delivery.paused)",
    )  # fmt: skip
    for n in range(3):
        assert post_webhook(api, webhook(f"h{n}")).status_code == 200
    for n in range(3):
        wait_for_status(api, instance["id"], f"h{n}", "PAUSED")
    assert callbacks.received == []
    assert api.patch(path, json={"delivery": {"paused": False}}, headers=headers).status_code == 200
    callbacks.wait_for(3)
    time.sleep(0.5)
    assert sorted(r.json()["message"]["raw"]["eventId"] for r in callbacks.received) == ["h0", "h1", "h2"]


def test_rejections_fail_their_event_but_do_not_pause_the_instance(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    """A 400 is the endpoint deciding about one event, not the endpoint being down."""
    instance = create_custom(api, f"{callbacks.url}/hook", **{"event.notification.pause.threshold": 2})
    callbacks.script = [Reply(400, b"bad order"), Reply(422, b"no"), Reply(400, b"bad order")]
    for n in range(4):
        assert post_webhook(api, webhook(f"r{n}")).status_code == 200
    callbacks.wait_for(4)
    statuses = [wait_for_status(api, instance["id"], f"r{n}", s)["status"] for n, s in enumerate(["FAILED"] * 3)]
    assert statuses == ["FAILED"] * 3
    wait_for_status(api, instance["id"], "r3", "NOTIFIED")
    assert delivery(api, instance["id"])["state"] == "active"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"delivery": {"paused": "yes"}}, "delivery.paused must be true or false"),
        ({"delivery": []}, 'delivery must be an object like {"paused": true}'),
        ({"configuration": {"event.notification.concurrency": 0}},
         "event.notification.concurrency must be a whole number from 1 to 1000"),
        ({"configuration": {"event.notification.pause.threshold": "x"}},
         "event.notification.pause.threshold must be a whole number from 1 to 1000"),
    ],
)  # fmt: skip
def test_bad_delivery_settings_are_refused_and_change_nothing(
    api: httpx.Client, body: dict[str, Any], message: str
) -> None:
    instance = create_custom(api, "http://127.0.0.1:9/hook")
    response = api.patch(f"/instances/{instance['id']}", json=body, headers={"Authorization": AUTH})
    assert (response.status_code, response.json()["message"]) == (400, message)
    assert delivery(api, instance["id"])["state"] == "active"
    created = api.post("/instances", json={"element": {"key": "ecwid"}, "delivery": {"paused": True}},
                       headers={"Authorization": AUTH})  # fmt: skip
    assert created.status_code == 400
    assert "delivery can only be changed on an existing instance (PUT or PATCH)" in created.json()["message"]
