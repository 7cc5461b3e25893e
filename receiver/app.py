"""The ASGI application: routes, lifespan, middleware and error mapping.

`create_app(settings)` builds it with explicit settings (tests, `ecwid-relay serve`);
`from_env()` is the factory uvicorn calls when it runs several worker processes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route, Router

from receiver import events_api, ingest, instances_api, openapi, probes
from receiver.errors import EXCEPTION_HANDLERS
from receiver.fast_path import Relay
from receiver.ingest_store import IngestStore
from receiver.instance_store import InstanceStore
from receiver.middleware import RequestContext
from receiver.services import Services
from workers import heap, logs, redis_check
from workers.settings import Settings

log = structlog.get_logger(logger_name="receiver.app")


def redis_client(url: str) -> aioredis.Redis:
    """Short timeouts and no retries: with Redis down, ingest must answer 503 within a second."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=0.3,
        socket_timeout=0.8,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
    )


async def _warn_if_unfit(connection: aioredis.Redis) -> None:
    """Log, once at start, each way this Redis could lose acknowledged events (workers/redis_check.py)."""
    try:
        report = await redis_check.inspect(connection)
    except Exception as exc:  # Redis down at start: /ready says so; ingest answers 503 until it is back
        log.warning("redis.unchecked", error=type(exc).__name__)
        return
    for problem in report.problems:
        log.warning("redis.unfit", problem=problem)


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Services]]:
        connection = redis_client(settings.require_redis_url())
        await _warn_if_unfit(connection)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
            services = Services(
                settings=settings,
                redis=connection,
                instances=InstanceStore(connection),
                inbox=IngestStore(connection, settings.dedup_ttl),
                http=http,
            )
            heap.settle()  # what start-up made lives as long as the process (workers/heap.py)
            yield {"services": services}
        await connection.aclose()

    app = Relay(
        # POST and PUT of /events/ecwid skip Starlette's router and middlewares (receiver/fast_path.py).
        fast_path=ingest.PATH,
        fast_methods=ingest.METHODS,
        fast_endpoint=ingest.ecwid_events,
        routes=[
            Route("/health", probes.health, methods=["GET"]),
            Route("/ready", probes.ready, methods=["GET"]),
            Route("/metrics", probes.metrics, methods=["GET"]),
            Route("/openapi.json", openapi.document, methods=["GET"]),
            *ingest.routes,
            *instances_api.routes,
            *events_api.routes,
        ],
        middleware=[Middleware(RequestContext)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # Ecwid treats a redirect as a failed delivery: never redirect /events/ecwid/ to /events/ecwid.
    assert isinstance(app.router, Router)
    app.router.redirect_slashes = False
    return app


def from_env() -> Starlette:
    """uvicorn factory (`receiver.app:from_env --factory`): settings read once per process."""
    settings = Settings.from_env(os.environ)
    logs.configure(settings.log_level, role="receiver")
    return create_app(settings)
