"""Helpers for polling tests: polling instances, and reading what reached the callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import redis

from tests.support.ecwid import create_custom
from tests.support.fake_ecwid_api import TOKEN
from tests.support.servers import Received
from workers import keys
from workers.context import WorkerContext
from workers.settings import Settings
from workers.worker import build_context


def create_polling(api: httpx.Client, callback_url: str, **extra: Any) -> dict[str, Any]:
    """A custom instance that polls the fake Ecwid API with its token."""
    config = {"event.vendor.type": "polling", "ecwid.api.token": TOKEN, **extra}
    return create_custom(api, callback_url, **config)


def polling_since(connection: redis.Redis, instance_id: int) -> int:
    """When polling started for the instance: the first round's `updatedFrom`."""
    return int(connection.hget(keys.poll_state(instance_id), "since"))  # type: ignore[arg-type]


@contextmanager
def poller(settings: Settings) -> Iterator[WorkerContext]:
    """What a worker process has when it runs a polling round: real clients, real Redis."""
    ctx = build_context(settings)
    try:
        yield ctx
    finally:
        ctx.client.close()
        ctx.ecwid.close()


def events(received: list[Received]) -> list[tuple[str, str, str]]:
    """(objectType, objectId, eventType) of every event in every notification, sorted."""
    return sorted(
        (event["objectType"], event["objectId"], event["eventType"])
        for request in received
        for event in request.json()["message"]["events"]
    )
