"""Batched deliveries: events queued together for one instance go out in one job, in order, and
a failure in a batch hands the rest to single jobs with the usual retries."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import redis

from tests.conftest import AUTH, WorkerProcess
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Reply
from workers import batches, keys
from workers.ecwid_events import describe
from workers.inbox import InboxItem, notification_id
from workers.settings import Settings


def record(client: redis.Redis, store: int, event_id: str, instance_id: int) -> tuple[str, list[int | None]]:
    """The event log's status of a notification, and the HTTP status of each attempt."""
    notification = notification_id(store, event_id, instance_id)
    status = (client.hget(f"relay:delivery:{notification}", "status") or b"").decode()
    attempts = [orjson.loads(raw)["status"] for raw in client.lrange(f"relay:delivery:{notification}:attempts", 0, -1)]
    return status, attempts


def wait_for_keys(client: redis.Redis, pattern: str, failure: str, timeout: float = 10.0) -> None:
    """Block until a key matching `pattern` exists (fails the test with `failure` on timeout)."""
    end = time.monotonic() + timeout
    while not client.keys(pattern):
        assert time.monotonic() < end, failure
        time.sleep(0.005)


def test_events_queued_together_go_out_in_one_job_in_order(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    for n in range(5):
        assert post_webhook(api, webhook(f"b-{n}")).status_code == 200
    worker = WorkerProcess(settings, tmp_path / "worker.log")  # started after: it takes all five at once
    try:
        received = callbacks.wait_for(5, timeout=20)
    finally:
        worker.stop()
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == [f"b-{n}" for n in range(5)]
    assert len({r.headers["elements-webhook-id"] for r in received}) == 5
    assert '"summary": "delivered 5, handed off 0, given back 0"' in worker.logs()  # one runner took all five
    assert [record(redis_client, 1003, f"b-{n}", instance["id"]) for n in range(5)] == [("NOTIFIED", [200])] * 5
    lines = [orjson.loads(line) for line in worker.logs().splitlines() if '"delivery.succeeded"' in line]
    # Each line says which event went where, and nothing of what the URL's path or query may hold.
    assert [(line["event_id"], line["store_id"], line["instance_id"], line["webhook_id"], line["batch_position"],
             line["url"], line["status"]) for line in lines] == [
        (f"b-{n}", 1003, instance["id"], r.headers["elements-webhook-id"], n, callbacks.url, 200)
        for n, r in enumerate(received)
    ]  # fmt: skip


def test_a_failure_in_a_batch_is_decided_as_for_a_single_delivery(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """A 503 in a batch: that event is retried on the schedule (4 s), the rest go out at once.
    A 400: that event fails for good, sent once, and stays in RQ's failed registry."""
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script += [Reply(200), Reply(503, b"busy"), Reply(400, b"no")]
    for n in range(5):
        assert post_webhook(api, webhook(f"f-{n}")).status_code == 200
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        received = callbacks.wait_for(6, timeout=20)
        time.sleep(0.5)
    finally:
        worker.stop()
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == ["f-0", "f-1", "f-2", "f-3", "f-4", "f-1"]
    assert received[1].headers["elements-webhook-id"] == received[5].headers["elements-webhook-id"]
    assert 3.0 <= received[5].at - received[1].at <= 8.0  # RQ's Retry, the first step of the schedule
    assert len(callbacks.received) == 6
    logs = worker.logs()
    # The failed event goes to a job of its own, the rest back to the URL's pending list, in order.
    assert '"summary": "delivered 1, handed off 1, given back 3"' in logs  # f-0 sent, f-1 failed
    assert '"summary": "handed off 1, given back 2"' in logs  # f-2 refused
    assert '"summary": "delivered 2, handed off 0, given back 0"' in logs
    assert record(redis_client, 1003, "f-1", instance["id"]) == ("NOTIFIED", [503, 200])
    assert record(redis_client, 1003, "f-2", instance["id"]) == ("FAILED", [400])
    assert [record(redis_client, 1003, f"f-{n}", instance["id"]) for n in (0, 3, 4)] == [("NOTIFIED", [200])] * 3
    assert redis_client.zcard("rq:failed:relay-deliveries") == 1


def test_instances_sharing_a_callback_url_share_batches(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    first = create_custom(api, f"{callbacks.url}/hook", store_id=7001)
    second = create_custom(api, f"{callbacks.url}/hook", store_id=7002)
    for n in range(3):
        for store in (7001, 7002):
            assert post_webhook(api, webhook(f"s-{store}-{n}", store_id=store)).status_code == 200
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        received = callbacks.wait_for(6, timeout=20)
    finally:
        worker.stop()
    assert [(r.json()["message"]["instanceId"], r.json()["message"]["raw"]["eventId"]) for r in received] == [
        (instance["id"], f"s-{store}-{n}") for n in range(3) for instance, store in ((first, 7001), (second, 7002))
    ]
    assert '"summary": "delivered 6, handed off 0, given back 0"' in worker.logs()
    for instance, store in ((first, 7001), (second, 7002)):
        assert [record(redis_client, store, f"s-{store}-{n}", instance["id"]) for n in range(3)] == [
            ("NOTIFIED", [200])
        ] * 3


def test_an_event_that_crashes_in_a_batch_does_not_hold_back_or_resend_the_others(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    for n in range(5):
        assert post_webhook(api, webhook(f"p-{n}", entity_id=100 + n)).status_code == 200
    # A Redis error for p-2 alone (WRONGTYPE on its change marker) stands in for any crash in an attempt.
    what = describe("order.created", 102, None)
    broken = keys.change(instance["id"], what.object_type, str(what.object_id))
    redis_client.rpush(broken, "not a marker")
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        callbacks.wait_for(4, timeout=15)
        time.sleep(1.5)
        sent = [r.json()["message"]["raw"]["eventId"] for r in callbacks.received]
        assert sorted(sent) == ["p-0", "p-1", "p-3", "p-4"]  # each once; p-2's crash held nothing back
        assert record(redis_client, 1003, "p-0", instance["id"]) == ("NOTIFIED", [200])
        redis_client.delete(broken)  # the trouble passes: p-2's own job retries it
        callbacks.wait_for(5, timeout=20)
    finally:
        worker.stop()
    assert sorted(r.json()["message"]["raw"]["eventId"] for r in callbacks.received) == [f"p-{n}" for n in range(5)]
    assert record(redis_client, 1003, "p-2", instance["id"])[0] == "NOTIFIED"


def test_a_batch_whose_worker_dies_is_sent_again_then_split_into_jobs_of_their_own(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """kill -9 mid-batch: RQ runs the batch again, which records what was answered (noted as it
    came: the URL took 50 ms) and sends the rest again, in order. Killed again: each event left
    goes to a job of its own, so that one that kills workers stays alone."""
    instance = create_custom(api, f"{callbacks.url}/hook")
    # k-0 is answered; k-1 hangs (longer than the test), twice.
    callbacks.script += [Reply(200, delay=0.05), Reply(200, delay=90), Reply(200, delay=90)]
    for n in range(3):
        assert post_webhook(api, webhook(f"k-{n}")).status_code == 200
    first = WorkerProcess(settings, tmp_path / "worker-0.log")
    callbacks.wait_for(1, timeout=20)
    time.sleep(0.5)  # k-1 on the wire
    first.process.kill()
    first.process.wait()
    second = WorkerProcess(settings, tmp_path / "worker-1.log")  # finds the batch abandoned, runs it again
    second.wait_for_log('"event": "batch.resumed_after_crash"', timeout=30)
    time.sleep(0.5)
    second.process.kill()
    second.process.wait()
    assert '"events": 3, "answered": 1, "crashes": 1' in second.logs()
    third = WorkerProcess(settings, tmp_path / "worker-2.log")
    try:
        received = callbacks.wait_for(3, timeout=40)
        time.sleep(0.5)
    finally:
        third.stop()
    assert '"events": 3, "answered": 1, "crashes": 2' in third.logs()
    assert '"summary": "delivered 1, handed off 2, given back 0"' in third.logs()  # k-0 recorded, not sent
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == ["k-0", "k-1", "k-2"]
    assert len(callbacks.received) == 3
    assert [record(redis_client, 1003, f"k-{n}", instance["id"]) for n in range(3)] == [("NOTIFIED", [200])] * 3
    assert redis_client.keys("relay:runner:*") == []


def test_a_batch_decides_each_event_as_a_single_delivery_would(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """One batch for a shared URL: a paused instance's events wait in its buffer, a change polling
    already reported is skipped, and the rest go out in order, all decided in one gate and one
    dedup call before the first is sent."""
    flowing = create_custom(api, f"{callbacks.url}/hook", store_id=7101)
    paused = create_custom(api, f"{callbacks.url}/hook", store_id=7102)
    polled = create_custom(api, f"{callbacks.url}/hook", store_id=7103)
    headers = {"Authorization": AUTH}
    assert api.patch(f"/instances/{paused['id']}", json={"delivery": {"paused": True}}, headers=headers).is_success
    # The poller reported order 301 of store 7103 as updated after the webhook's change.
    redis_client.set(keys.change(polled["id"], "orders", "301"), "1700000005 UPDATED poll")
    for n in range(2):
        for store in (7101, 7102, 7103):
            event = webhook(f"m-{store}-{n}", store_id=store, entity_id=300 + n, event_type="order.updated")
            assert post_webhook(api, event).status_code == 200
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        received = callbacks.wait_for(3, timeout=20)
        time.sleep(1.0)
    finally:
        worker.stop()
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == ["m-7101-0", "m-7103-0", "m-7101-1"]
    assert len(callbacks.received) == 3
    assert '"summary": "delivered 3, paused 2, skipped 1, handed off 0, given back 0"' in worker.logs()
    assert [record(redis_client, 7101, f"m-7101-{n}", flowing["id"]) for n in range(2)] == [("NOTIFIED", [200])] * 2
    assert [record(redis_client, 7102, f"m-7102-{n}", paused["id"]) for n in range(2)] == [("PAUSED", [])] * 2
    buffered = redis_client.lrange(keys.delivery_buffer(paused["id"]), 0, -1)
    assert [InboxItem.loads(raw).event_id for raw in buffered] == ["m-7102-0", "m-7102-1"]
    assert record(redis_client, 7103, "m-7103-0", polled["id"]) == ("NOTIFIED", [200])
    assert record(redis_client, 7103, "m-7103-1", polled["id"]) == ("SKIPPED", [])
    reason = redis_client.hget(f"relay:delivery:{notification_id(7103, 'm-7103-1', polled['id'])}", "reason")
    assert reason == b"the poller already reported this change"


def test_events_that_came_while_a_failure_was_on_the_wire_wait_for_its_decision(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """A failure is decided (here a 400: failed for good) before the URL gets more, even when the
    events after it came, and had a runner queued for them, while the failing request was on the wire."""
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script += [Reply(400, b"no", delay=0.5)]
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        assert post_webhook(api, webhook("o-0")).status_code == 200
        wait_for_keys(redis_client, "relay:runner:*:taken", "no runner took o-0")  # its POST is on the wire
        for n in (1, 2):
            assert post_webhook(api, webhook(f"o-{n}")).status_code == 200
        # The dispatcher queued a runner for them, before o-0's answer came.
        wait_for_keys(redis_client, "relay:url:*:runner", "no runner was queued for o-1 and o-2")
        assert redis_client.keys("relay:runner:*:taken")
        received = callbacks.wait_for(3, timeout=20)
        time.sleep(0.3)
    finally:
        worker.stop()
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == ["o-0", "o-1", "o-2"]
    lines = [orjson.loads(line) for line in worker.logs().splitlines() if line.startswith("{")]
    outcomes = [(line["event"], line["event_id"]) for line in lines if line["event"].startswith("delivery.")]
    assert outcomes == [("delivery.failed", "o-0"), ("delivery.succeeded", "o-1"), ("delivery.succeeded", "o-2")]
    assert record(redis_client, 1003, "o-0", instance["id"]) == ("FAILED", [400])
    assert [record(redis_client, 1003, f"o-{n}", instance["id"]) for n in (1, 2)] == [("NOTIFIED", [200])] * 2
    assert redis_client.keys("relay:url:*:undecided") == []


def test_a_runner_takes_again_what_came_while_its_batch_was_on_the_wire(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Under a steady stream a runner job keeps taking (within its budget): the events that came
    while its first batch was on the wire go out in the same job, not in a job of their own."""
    create_custom(api, f"{callbacks.url}/hook")
    callbacks.script += [Reply(200, delay=0.4)]
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        assert post_webhook(api, webhook("w-0")).status_code == 200
        wait_for_keys(redis_client, "relay:runner:*:taken", "no runner took w-0")  # its POST is on the wire
        for n in (1, 2):
            assert post_webhook(api, webhook(f"w-{n}")).status_code == 200
        received = callbacks.wait_for(3, timeout=20)
        time.sleep(0.5)
    finally:
        worker.stop()
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == ["w-0", "w-1", "w-2"]
    batches = [line for line in map(orjson.loads, worker.logs().splitlines()) if line.get("event") == "batch.done"]
    # One job, three batches: after w-0's 400 ms answer the URL's pace lets the next take have one.
    # Each next batch was taken by the transaction that recorded the one before.
    assert [(b["summary"], b["job_id"], b["took_next"]) for b in batches] == [
        ("delivered 1, handed off 0, given back 0", batches[0]["job_id"], took) for took in (1, 1, 0)
    ]


def test_a_runner_waits_briefly_for_more_before_it_ends(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    """An event that comes just after a runner's batch went out is taken by that runner (within
    LINGER_SECONDS, 50 ms), not left to a new job; one that comes later gets a new runner."""
    create_custom(api, f"{callbacks.url}/hook")
    assert post_webhook(api, webhook("l-0")).status_code == 200
    callbacks.wait_for(1, timeout=20)
    time.sleep(0.025)
    assert post_webhook(api, webhook("l-1")).status_code == 200
    callbacks.wait_for(2, timeout=20)
    time.sleep(0.5)  # the runner has stopped waiting
    assert redis_client.keys("relay:url:*:runner") == []  # and no longer stands for the URL
    assert post_webhook(api, webhook("l-2")).status_code == 200
    received = callbacks.wait_for(3, timeout=20)
    time.sleep(0.3)
    assert [r.json()["message"]["raw"]["eventId"] for r in received] == ["l-0", "l-1", "l-2"]
    jobs = [line["job_id"] for line in map(orjson.loads, worker.logs().splitlines())
            if line.get("event") == "delivery.succeeded"]  # fmt: skip
    assert len(jobs) == 3
    assert jobs[0] == jobs[1] != jobs[2]


def test_a_batch_of_fast_answers_is_noted_as_it_goes_so_a_crash_resends_little(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """Answers are noted together at most every 25 ms (each one at once when they take longer):
    killed while the 41st event is on the wire, the batch run again sends that one and at most the
    few answered since the last note, not the whole batch."""
    create_custom(api, f"{callbacks.url}/hook")
    callbacks.script += [Reply(200, delay=0.005)] * 40 + [Reply(200, delay=90)]
    for n in range(41):
        assert post_webhook(api, webhook(f"q-{n}")).status_code == 200
    first = WorkerProcess(settings, tmp_path / "worker-0.log")
    callbacks.wait_for(40, timeout=30)
    time.sleep(0.3)  # q-40 on the wire
    first.process.kill()
    first.process.wait()
    second = WorkerProcess(settings, tmp_path / "worker-1.log")  # finds the batch abandoned, runs it again
    try:
        second.wait_for_log('"event": "batch.resumed_after_crash"', timeout=30)
        callbacks.wait_for(41, timeout=20)
        time.sleep(1.0)
        received = list(callbacks.received)
    finally:
        second.stop()
    ids = [r.json()["message"]["raw"]["eventId"] for r in received]
    assert sorted(set(ids)) == sorted(f"q-{n}" for n in range(41))
    resent = len(ids) - 41  # q-40 arrived once: its first attempt never got its answer
    assert 0 <= resent <= 6
    assert redis_client.keys("relay:runner:*") == []


def test_runner_jobs_get_budgets_spread_around_a_second() -> None:
    """So that the runners of one URL on different workers do not keep ending at once."""
    budgets = [batches.job_budget() for _ in range(200)]
    assert all(0.75 * batches.BUDGET_SECONDS <= b <= 1.25 * batches.BUDGET_SECONDS for b in budgets)
    assert max(budgets) - min(budgets) > 0.25 * batches.BUDGET_SECONDS
