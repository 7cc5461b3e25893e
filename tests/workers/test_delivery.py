"""Delivery by a real worker process: retries, redirects, SSRF refusals, late instance changes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from tests.conftest import AUTH, ROOT, WorkerProcess, running_receiver
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Reply
from workers.settings import Settings


def test_failed_attempts_are_retried_with_the_same_id(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    create_custom(api, f"{callbacks.url}/hook")
    callbacks.script += [Reply(500, b"oops"), Reply(302, b"", {"Location": "http://169.254.169.254/"})]
    assert post_webhook(api, webhook()).status_code == 200
    first, second, third = callbacks.wait_for(3, timeout=40)
    assert first.headers["elements-webhook-id"] == second.headers["elements-webhook-id"]
    assert second.headers["elements-webhook-id"] == third.headers["elements-webhook-id"]
    assert first.body == third.body
    # RQ's Retry follows the Cloud Elements schedule: 4 s, then 16 s.
    assert 3.0 <= second.at - first.at <= 8.0
    assert 15.0 <= third.at - second.at <= 22.0
    time.sleep(0.5)
    assert len(callbacks.received) == 3
    logs = worker.logs()
    assert logs.count('"event": "delivery.attempt_failed"') == 2
    assert '"status": 500' in logs and '"body": "oops"' in logs and '"status": 302' in logs


def test_queued_events_follow_instance_changes(
    api: httpx.Client, callbacks: CallbackServer, settings: Settings, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """The instance is read at delivery time: a new URL applies, a deleted instance drops."""
    moved = create_custom(api, "http://127.0.0.1:9/old-url")
    gone = create_custom(api, f"{callbacks.url}/gone", store_id=2000)
    rehomed = create_custom(api, f"{callbacks.url}/rehomed", store_id=4000)
    assert post_webhook(api, webhook("e-moved")).status_code == 200
    assert post_webhook(api, webhook("e-gone", store_id=2000)).status_code == 200
    assert post_webhook(api, webhook("e-rehomed", store_id=4000)).status_code == 200
    patch = {"configuration": {"event.notification.callback.url": f"{callbacks.url}/new-url"}}
    assert api.patch(f"/instances/{moved['id']}", json=patch, headers={"Authorization": AUTH}).status_code == 200
    assert api.delete(f"/instances/{gone['id']}", headers={"Authorization": AUTH}).status_code == 200
    to_other_store = {"configuration": {"ecwid.store.id": "4001"}}
    response = api.patch(f"/instances/{rehomed['id']}", json=to_other_store, headers={"Authorization": AUTH})
    assert response.status_code == 200

    process = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        [delivery] = callbacks.wait_for(1, timeout=10)
        process.wait_for_log('"reason": "instance deleted"')
        process.wait_for_log('"reason": "instance moved to another store"')
    finally:
        process.stop()
    assert delivery.path == "/new-url"
    assert delivery.json()["message"]["raw"]["eventId"] == "e-moved"
    assert len(callbacks.received) == 1


def test_ssrf_guard_refuses_at_delivery_time(
    strict_settings: Settings, callbacks: CallbackServer, tmp_path: Path, redis_client: redis.Redis
) -> None:
    """With no allowed networks (the production default), loopback callbacks get no packet."""
    process = WorkerProcess(strict_settings, tmp_path / "worker.log")
    try:
        with running_receiver(strict_settings) as running, running.client() as api:
            for n, host in enumerate(["127.0.0.1", "localhost", "127.1", "[::ffff:127.0.0.1]"]):
                create_custom(api, f"http://{host}:{callbacks.port}/hook", store_id=3000 + n)
                assert post_webhook(api, webhook(f"e-{n}", store_id=3000 + n)).status_code == 200
        for _ in range(100):
            if redis_client.zcard("rq:failed:relay-deliveries") == 4:
                break
            time.sleep(0.1)
    finally:
        process.stop()
    assert redis_client.zcard("rq:failed:relay-deliveries") == 4
    assert callbacks.received == []
    assert process.logs().count('"event": "delivery.failed"') == 4
    assert process.logs().count('"reason": "CallbackRefused: ') == 4  # permanent: no retry was scheduled
    assert redis_client.zcard("rq:scheduled:relay-deliveries") == 0


def test_nulls_forwarded_untouched_when_filter_is_off(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    create_custom(api, f"{callbacks.url}/hook", **{"filter.response.nulls": False})
    body = webhook(data={"orderId": "A1", "oldPaymentStatus": None})
    assert post_webhook(api, body).status_code == 200
    [delivery] = callbacks.wait_for(1, timeout=10)
    assert delivery.body.endswith(b',"raw":' + json.dumps(body).encode() + b"}}")
    assert delivery.json()["message"]["raw"]["data"]["oldPaymentStatus"] is None


def test_worker_does_not_import_starlette() -> None:
    code = (
        "import sys, workers.cli, workers.worker, workers.delivery, workers.dispatcher, workers.devstack;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'receiver')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
