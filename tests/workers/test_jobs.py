"""The per-endpoint concurrency limit (workers/jobs.py), over real HTTP with a real worker."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.conftest import WorkerProcess
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Received, Reply
from workers import keys, pending


class SlowEndpoint(CallbackServer):
    def reply_for(self, record: Received) -> Reply:
        return Reply(200, b"{}", delay=1.0)


@pytest.fixture
def slow() -> Iterator[SlowEndpoint]:
    server = SlowEndpoint()
    yield server
    server.close()


def test_a_slow_endpoint_does_not_starve_another_instance(
    api: httpx.Client, slow: SlowEndpoint, callbacks: CallbackServer, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    """Eight events for an endpoint that takes a second each, then eight for a fast one. With
    a limit of one in flight, the slow endpoint's backlog waits in its pending list, and the fast
    instance's events go out while the slow endpoint is still on its first or second."""
    create_custom(api, f"{slow.url}/hook", store_id=5001, **{"event.notification.concurrency": 1})
    create_custom(api, f"{callbacks.url}/hook", store_id=5002)
    for n in range(8):
        assert post_webhook(api, webhook(f"slow-{n}", store_id=5001)).status_code == 200
    for n in range(8):
        assert post_webhook(api, webhook(f"fast-{n}", store_id=5002)).status_code == 200
    callbacks.wait_for(8, timeout=15)
    assert len(slow.received) <= 2  # without the limit, all eight slow ones were queued first: 8 s
    # The slow endpoint's backlog waits in its pending list: its runner took all eight, sent one in
    # its second, gave the rest back, and now takes one at a time (the URL's pace).
    assert redis_client.llen(pending.pending(keys.endpoint_limit(f"{slow.url}/hook"))) >= 5
    slow.wait_for(8, timeout=20)
    assert sorted(r.json()["message"]["raw"]["eventId"] for r in slow.received) == [f"slow-{n}" for n in range(8)]
    # One request at a time, as configured: each arrived after the previous one's second was over.
    arrivals = [r.at for r in slow.received]
    assert all(later - earlier >= 0.95 for earlier, later in zip(arrivals, arrivals[1:], strict=False))
