"""Worker metrics: a real worker process counts what its delivery jobs did and serves it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AUTH, WorkerProcess
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Received, Reply, free_port
from workers.settings import Settings


class ScriptedByPath(CallbackServer):
    """/ok answers 200, /bad 400 (permanent), /retry 503 with Retry-After: 1 once, then 200."""

    def reply_for(self, record: Received) -> Reply:
        if record.path == "/bad":
            return Reply(400, b"no thanks")
        if record.path == "/retry" and not any(r.path == "/retry" for r in self.received):
            return Reply(503, b"busy", {"Retry-After": "1"})
        return Reply()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_until(url: str, wanted: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[object, float]:
    """The metrics once they show `wanted` (a job is counted just after its callback answers)."""
    end = time.monotonic() + 10
    while True:
        found = samples(httpx.get(url).text)
        if all(found.get(key) == value for key, value in wanted.items()) or time.monotonic() > end:
            return dict(found)
        time.sleep(0.1)


def test_worker_serves_delivery_and_retry_counts(settings: Settings, api: httpx.Client, tmp_path: Path) -> None:
    callbacks = ScriptedByPath()
    port = free_port()
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", ("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    )
    try:
        for store, path in ((2001, "/ok"), (2002, "/retry"), (2003, "/bad")):
            create_custom(api, f"{callbacks.url}{path}", store_id=store)
            assert post_webhook(api, webhook(f"evt-{store}", store_id=store)).status_code == 200
        callbacks.wait_for(4, timeout=15)
        wanted = {
            ("relay_deliveries_total", (("outcome", "delivered"),)): 2.0,
            ("relay_deliveries_total", (("outcome", "failed"),)): 1.0,
            ("relay_deliveries_total", (("outcome", "skipped"),)): 0.0,
            ("relay_deliveries_total", (("outcome", "error"),)): 0.0,
            ("relay_delivery_retries_total", ()): 1.0,
            ("relay_delivery_duration_seconds_count", (("outcome", "delivered"),)): 2.0,
            ("relay_delivery_duration_seconds_count", (("outcome", "retry"),)): 1.0,
            ("relay_delivery_duration_seconds_count", (("outcome", "failed"),)): 1.0,
            ("relay_poll_rounds_total", (("result", "ok"),)): 0.0,
        }
        found = scrape_until(f"http://127.0.0.1:{port}/metrics", wanted)
        assert {key: found.get(key) for key in wanted} == wanted
        # The receiver reads the failed registry from Redis: the 400 is there, the rest are not.
        receiver = samples(api.get("/metrics").text)
        assert receiver[("relay_queue_failed", (("queue", "relay-deliveries"),))] == 1.0
        assert receiver[("relay_queue_depth", (("queue", "relay-deliveries"),))] == 0.0
        assert receiver[("relay_inbox_depth", ())] == 0.0
        assert receiver[("relay_dispatchers", ())] == 1.0
    finally:
        worker.stop()
        callbacks.close()
    assert [r.path for r in callbacks.received].count("/retry") == 2


def test_paused_instances_show_in_metrics(settings: Settings, api: httpx.Client, tmp_path: Path) -> None:
    """A delivery held back by a pause counts as "paused" on the worker; the receiver's gauge counts
    paused instances, by hand or after failures."""
    callbacks = CallbackServer()
    callbacks.script = [Reply(503, b"down")] * 20
    port = free_port()
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", ("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    )
    try:
        by_hand = create_custom(api, f"{callbacks.url}/by-hand", store_id=1004)
        paused = api.patch(
            f"/instances/{by_hand['id']}", json={"delivery": {"paused": True}}, headers={"Authorization": AUTH}
        )
        assert paused.status_code == 200, paused.text
        assert post_webhook(api, webhook("p-1", store_id=1004)).status_code == 200
        wanted = {("relay_deliveries_total", (("outcome", "paused"),)): 1.0}
        found = scrape_until(f"http://127.0.0.1:{port}/metrics", wanted)
        assert {key: found.get(key) for key in wanted} == wanted
        assert callbacks.received == []
        receiver = samples(api.get("/metrics").text)
        assert receiver[PAUSED] == 1.0

        create_custom(api, f"{callbacks.url}/failing", **{"event.notification.pause.threshold": "1"})
        assert post_webhook(api, webhook("p-2")).status_code == 200
        callbacks.wait_for(1)
        end = time.monotonic() + 10
        while (gauge := samples(api.get("/metrics").text))[PAUSED] != 2.0 and time.monotonic() < end:
            time.sleep(0.1)
        assert (gauge[PAUSED], gauge[("relay_instances_delivery_state", (("state", "draining"),))]) == (2.0, 0.0)
    finally:
        worker.stop()
        callbacks.close()


PAUSED = ("relay_instances_delivery_state", (("state", "paused"),))
