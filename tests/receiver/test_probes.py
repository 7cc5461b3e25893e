"""GET /health, /ready and /metrics on a real uvicorn, with Redis up and with Redis gone."""

from __future__ import annotations

from dataclasses import replace

import httpx
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


def test_ready_and_metrics_answer_503_without_redis(settings: Settings) -> None:
    gone = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}")
    with running_receiver(gone) as receiver, receiver.client() as client:
        assert client.get("/health").status_code == 200
        for path in ("/ready", "/metrics"):
            response = client.get(path)
            assert response.status_code == 503
            assert set(response.json()) == {"requestId", "message"}
            assert "Redis" in response.json()["message"] or "storage" in response.json()["message"]


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
