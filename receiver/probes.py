"""Operational endpoints: `GET /health` (liveness), `GET /ready` (Redis answers), `GET /metrics`.

/health says only that the process serves HTTP: restarting a receiver cannot
bring Redis back, so liveness must not depend on it. /ready answers 503 while
Redis is unreachable, so a load balancer sends Ecwid's retries to a receiver that
can store them.

/metrics renders this process's counters (receiver/metrics.py, plus
prometheus-client's process and Python collectors) and the queue depths, read
from Redis at scrape time with one async pipeline (workers/queue_stats.py) before
the text is rendered: the event loop never blocks on Redis. Worker-side counters
(deliveries, retries, latency, polling rounds) are served by each worker
(workers/metrics.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import redis.exceptions
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.errors import error_response
from receiver.services import services
from workers import queue_stats


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    try:
        await services(request).redis.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError):
        return error_response(request, 503, "not ready: Redis is unreachable")
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus text format, always: while Redis is unreachable, this process's counters (the
    rejections that show the outage among them) with `relay_redis_up 0` and no queue gauges."""
    try:
        stats: queue_stats.QueueStats | None = await queue_stats.read(services(request).redis)
    except redis.exceptions.RedisError:
        stats = None
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(stats))
    body = generate_latest(REGISTRY) + generate_latest(snapshot)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class _Snapshot(Collector):
    """Gauges from one reading of Redis, rendered once."""

    def __init__(self, stats: queue_stats.QueueStats | None) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.stats
        yield GaugeMetricFamily("relay_redis_up", "1 if this scrape could read Redis, else 0.", value=int(bool(stats)))
        if stats is None:
            return
        yield GaugeMetricFamily("relay_inbox_depth", "Accepted events not yet dispatched to RQ.", value=stats.inbox)
        yield GaugeMetricFamily(
            "relay_pending_depth",
            "Events waiting in callback URLs' pending lists for a runner job.",
            value=stats.pending,
        )
        for name, help_text, values in (
            ("relay_queue_depth", "RQ jobs waiting to run, per queue.", stats.queued),
            ("relay_queue_scheduled", "RQ jobs waiting for their retry time, per queue.", stats.scheduled),
            ("relay_queue_started", "RQ jobs running now, per queue.", stats.started),
            ("relay_queue_failed", "RQ jobs in the failed registry, per queue.", stats.failed),
            (
                "relay_queue_rate_limited",
                "Delivery jobs held outside the queue by a callback URL's concurrency limit, per queue.",
                stats.rate_limited,
            ),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["queue"])
            for queue, count in values.items():
                family.add_metric([queue], count)
            yield family
        yield GaugeMetricFamily(
            "relay_dispatchers", "Dispatcher threads that heartbeat within the last minute.", value=stats.dispatchers
        )
        states = GaugeMetricFamily(
            "relay_instances_delivery_state",
            "Instances whose deliveries are paused (after failures, by hand or by a 410 Gone) or drain their buffer.",
            labels=["state"],
        )
        for state, count in stats.delivery_states.items():
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily(
            "relay_instances_polling_disabled",
            "Instances whose polling stopped after failures (paused until events are enabled again).",
            value=stats.polling_disabled,
        )
