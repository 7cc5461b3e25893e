"""GET /health, /ready and /metrics on a real uvicorn, with Redis up and with Redis gone."""

from __future__ import annotations

from dataclasses import replace

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import running_receiver
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, free_port
from workers.settings import Settings

Key = tuple[str, tuple[tuple[str, str], ...]]


def samples(api: httpx.Client) -> dict[Key, float]:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=1.0.0")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_health_and_ready_with_redis_up(api: httpx.Client) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_without_redis_ready_is_503_and_metrics_still_show_the_outage(settings: Settings) -> None:
    gone = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}")
    with running_receiver(gone) as receiver, receiver.client() as client:
        assert client.get("/health").status_code == 200
        response = client.get("/ready")
        assert (response.status_code, response.json()["message"]) == (503, "not ready: Redis is unreachable")
        assert set(response.json()) == {"requestId", "message"}
        before = samples(client).get(("relay_events_rejected_total", (("reason", "unavailable"),)), 0.0)
        assert client.post("/events/ecwid", json={}).status_code in (400, 401, 503)
        assert post_webhook(client, webhook("down-1")).status_code == 503
        during = samples(client)  # an alert on rejections can fire during the outage, not after it
        assert during[("relay_redis_up", ())] == 0
        assert during[("relay_events_rejected_total", (("reason", "unavailable"),))] == before + 1
        assert ("relay_inbox_depth", ()) not in during


def test_dead_dispatchers_and_jobs_held_by_a_concurrency_limit_show(
    api: httpx.Client, redis_client: redis.Redis
) -> None:
    now = redis_client.time()[0]
    redis_client.zadd("relay:dispatchers", {"alive": now - 5, "dead": now - 3600})
    redis_client.sadd("rq:rl-keys", "endpoint:a", "endpoint:b")
    redis_client.zadd("rq:rl:endpoint:a:rate_limited", {"j1": 1, "j2": 2})
    redis_client.zadd("rq:rl:endpoint:b:rate_limited", {"j3": 3})
    found = samples(api)
    assert found[("relay_dispatchers", ())] == 1  # the dead one stays in the set until recovered
    assert found[("relay_queue_rate_limited", (("queue", "relay-deliveries"),))] == 3
    assert found[("relay_redis_up", ())] == 1


def test_metrics_count_ingested_duplicates_and_rejections(api: httpx.Client, callbacks: CallbackServer) -> None:
    create_custom(api, f"{callbacks.url}/hook")
    before = samples(api)
    assert post_webhook(api, webhook("m-1")).json()["message"] == "accepted"
    assert post_webhook(api, webhook("m-1")).json()["message"].startswith("duplicate")
    assert post_webhook(api, webhook("m-2"), secret="not-the-secret-at-all").status_code == 401
    assert (
        api.post("/events/ecwid", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    )
    assert api.get("/instances/999", headers={"Authorization": "nobody"}).status_code == 401  # not an event post
    after = samples(api)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("relay_events_ingested_total", kind="webhook") == 1
    assert delta("relay_events_deduplicated_total", kind="webhook") == 1
    assert delta("relay_events_rejected_total", reason="unauthorized") == 1
    assert delta("relay_events_rejected_total", reason="bad_request") == 1
    # No worker runs: the accepted event waits in the inbox, read from Redis at scrape time.
    assert after[("relay_inbox_depth", ())] == 1
    assert after[("relay_queue_depth", (("queue", "relay-deliveries"),))] == 0
    assert after[("relay_instances_polling_disabled", ())] == 0
    assert ("process_open_fds", ()) in after  # prometheus-client's process collector is on
