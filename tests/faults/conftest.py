"""The fault suite: each test runs its own redis-server (so it can kill it), real
`ecwid-relay serve` and `worker` processes, and a misbehaving callback endpoint.

Every test here carries the `faults` marker: `scripts/test -k faults -s` runs them
and prints their figures.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLIENT_SECRET, ORG, OTHER_USER, USER
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.ledger import LedgerServer
from tests.support.servers import free_port
from workers.redis_server import RedisServer
from workers.settings import Secret, Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, on a free port, AOF with fsync always."""
    server = RedisServer(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_settings(own_redis: RedisServer) -> Settings:
    return Settings(
        redis_url=own_redis.url,
        organization_secret=Secret(ORG),
        user_secrets=(Secret(USER), Secret(OTHER_USER)),
        ecwid_client_secrets=(Secret(CLIENT_SECRET),),
        callback_allow_nets=(ipaddress.ip_network("127.0.0.0/8"),),
    )


@pytest.fixture
def ledger() -> Iterator[LedgerServer]:
    server = LedgerServer()
    yield server
    server.close()


def subscribe(api: httpx.Client, url: str, store_id: int = 1003) -> int:
    """One instance of `store_id` forwarding to `url`; returns its id."""
    return int(create_custom(api, url, store_id=store_id)["id"])


def send(
    api: httpx.Client, event_ids: list[str], store_id: int = 1003, into: dict[str, int | str] | None = None
) -> dict[str, int | str]:
    """POST each event once, signed; returns what each got (status code, or the transport error),
    also writing each answer into `into` as it comes, for a test watching from another thread."""
    answers: dict[str, int | str] = {} if into is None else into
    for event_id in event_ids:
        try:
            answers[event_id] = post_webhook(api, webhook(event_id, store_id=store_id)).status_code
        except httpx.TransportError as exc:
            answers[event_id] = type(exc).__name__
    return answers
