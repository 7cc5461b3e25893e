"""Polling as processes: `ecwid-relay poll --once`, a round killed halfway, two schedulers at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from rq.cron import CronScheduler

from tests.conftest import ROOT, WorkerProcess, worker_env
from tests.support.fake_ecwid_api import FakeEcwidApi, Fault
from tests.support.polling import create_polling, events, poller, polling_since
from tests.support.servers import CallbackServer
from workers import keys
from workers.poll_store import PollStore
from workers.polling import Outcome, poll_round
from workers.settings import Settings


def poll_once(settings: Settings, instance_id: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "workers.cli", "poll", "--once", "--instance", str(instance_id)]
    return subprocess.Popen(
        command, env=worker_env(settings), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def outcome_of(output: bytes) -> dict[str, object]:
    [line] = [line for line in output.decode().splitlines() if line.startswith('{"poll"')]
    result: dict[str, object] = json.loads(line)["poll"]
    return result


def test_poll_once_forwards_exactly_the_changes(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    poll_worker: WorkerProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook")  # every object: the default
    since = polling_since(redis_client, instance["id"])
    ecwid_api.order("XJ12H", since)
    ecwid_api.cart("CART-1", since - 100, since + 5)
    ecwid_api.category(3, "Shoes", since)  # the first listing is the baseline: not reported
    process = poll_once(poll_settings, instance["id"])
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output.decode()
    assert outcome_of(output) == {"instance_id": instance["id"], "outcome": "ok", "forwarded": 2, "detail": ""}
    assert events(callbacks.wait_for(2)) == [("carts", "CART-1", "UPDATED"), ("orders", "XJ12H", "CREATED")]

    ecwid_api.category(4, "Hats", since + 60)  # moves latest-stats' categoriesUpdated
    ecwid_api.category(3, "Sneakers", since + 60)
    process = poll_once(poll_settings, instance["id"])
    output, _ = process.communicate(timeout=60)
    assert outcome_of(output)["forwarded"] == 2
    [batch] = callbacks.wait_for(3)[2:]  # both in one notification: same object type
    assert events([batch]) == [("categories", "3", "UPDATED"), ("categories", "4", "CREATED")]
    assert batch.json()["message"]["raw"] == [{"id": 3, "name": "Sneakers", "productCount": 0},
                                              {"id": 4, "name": "Hats", "productCount": 0}]  # fmt: skip
    assert len(ecwid_api.requests_to("/categories")) == 2


def test_a_round_killed_halfway_loses_nothing(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    poll_worker: WorkerProcess, redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    since = polling_since(redis_client, instance["id"])
    for n in range(250):
        ecwid_api.order(f"ORD{n:03d}", since + n)
    ecwid_api.faults.append(Fault("/orders", delay=60, offset=90))  # the second page hangs
    process = poll_once(poll_settings, instance["id"])
    end = time.monotonic() + 30
    while not any(s.params.get("offset") == "90" for s in ecwid_api.requests_to("/orders")):
        assert time.monotonic() < end and process.poll() is None, "the round never reached page 2"
        time.sleep(0.05)
    process.kill()
    process.wait()

    # Nothing of the half-read round is visible: no notification, no cursor, no marker.
    assert redis_client.llen(keys.INBOX) == 0
    assert redis_client.hget(keys.poll_state(instance["id"]), "cursor:orders") is None
    assert list(redis_client.scan_iter(keys.PREFIX + "change:*")) == []
    assert 0 < redis_client.ttl(keys.poll_lock(instance["id"])) <= 120
    redis_client.delete(keys.poll_lock(instance["id"]))  # as its TTL would, two minutes later

    process = poll_once(poll_settings, instance["id"])
    output, _ = process.communicate(timeout=60)
    assert outcome_of(output) == {"instance_id": instance["id"], "outcome": "ok", "forwarded": 250, "detail": ""}
    received = callbacks.wait_for(25, timeout=30)
    assert [e[1] for e in events(received)] == [f"ORD{n:03d}" for n in range(250)]


@pytest.fixture
def schedulers(poll_settings: Settings, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    command = [sys.executable, "-m", "workers.cli", "scheduler", "--tick", "1"]
    logs = [(tmp_path / f"scheduler-{n}.log").open("wb") for n in range(2)]
    running = [
        subprocess.Popen(command, env=worker_env(poll_settings), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        for log in logs
    ]
    yield running
    for process in running:
        process.terminate()
        process.wait(20)
    for log in logs:
        log.close()


def test_two_schedulers_never_poll_an_instance_twice_in_one_window(
    api: httpx.Client, ecwid_api: FakeEcwidApi, callbacks: CallbackServer, poll_worker: WorkerProcess,
    schedulers: list[subprocess.Popen[bytes]], redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(
        api, f"{callbacks.url}/hook", **{"event.objects": "orders", "event.poller.refresh_interval": 1}
    )
    ecwid_api.order("XJ12H", polling_since(redis_client, instance["id"]))
    callbacks.wait_for(1, timeout=20)
    time.sleep(5)  # five more ticks from each scheduler
    assert all(process.poll() is None for process in schedulers)
    assert poll_worker.logs().count("workers.polling.plan") >= 6  # both schedulers kept planning
    assert len(CronScheduler.all(redis_client)) == 2
    # The instance was claimed by one plan only; no second round even had to be turned away.
    assert poll_worker.logs().count('"poll.planned"') == 1
    assert '"poll.skipped"' not in poll_worker.logs()
    assert len(ecwid_api.requests_to("/orders")) == 1
    assert len(ecwid_api.requests_to("/orders/deleted")) == 1
    assert len(callbacks.received) == 1
    due = redis_client.zscore(keys.POLL_DUE, instance["id"])
    started = int(redis_client.hget(keys.poll_state(instance["id"]), "last_started"))  # type: ignore[arg-type]
    assert due is not None and int(due) == started + 60  # the next window, one interval on


def test_a_round_is_skipped_while_another_holds_the_lock(
    api: httpx.Client, poll_settings: Settings, ecwid_api: FakeEcwidApi, callbacks: CallbackServer,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    instance = create_polling(api, f"{callbacks.url}/hook", **{"event.objects": "orders"})
    held = PollStore(redis_client).acquire(instance["id"], ttl=120)
    assert held is not None
    with poller(poll_settings) as ctx:
        outcome = poll_round(ctx, instance["id"], force=True)
        assert outcome == Outcome(instance["id"], "skipped", 0, "a round for this instance is already running")
        assert ecwid_api.seen == []
        PollStore(redis_client).release(instance["id"], held)
        assert poll_round(ctx, instance["id"], force=True).outcome == "ok"
