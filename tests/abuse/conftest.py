"""The abuse suite: hostile input against real processes. Each test here carries the
`abuse` and `faults` markers, so `scripts/test -k faults -s` runs it with the fault suite."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tests.conftest import CLIENT_SECRET, ORG, OTHER_USER, USER
from tests.support.processes import Receiver
from tests.support.servers import FakeEcwidOAuth
from workers.redis_server import RedisServer
from workers.settings import Secret, Settings

FORBIDDEN_IN_LOGS = ("request.crashed", "Traceback", '"level": "error"', '"level": "critical"')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/abuse/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.abuse)
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def abuse_settings(redis_server: RedisServer, redis_client: redis.Redis, fake_ecwid: FakeEcwidOAuth) -> Settings:
    """Production defaults (no allowed callback networks), on the suite's Redis, emptied;
    Ecwid's OAuth is the local fake, which refuses every code but `good-code`."""
    return Settings(
        redis_url=redis_server.url,
        ecwid_oauth_url=fake_ecwid.oauth_url,
        organization_secret=Secret(ORG),
        user_secrets=(Secret(USER), Secret(OTHER_USER)),
        ecwid_client_secrets=(Secret(CLIENT_SECRET),),
        callback_allow_nets=(),
    )


@pytest.fixture
def loopback_settings(abuse_settings: Settings) -> Settings:
    return replace(abuse_settings, callback_allow_nets=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.fixture
def receiver_process(abuse_settings: Settings, tmp_path: Path) -> Iterator[Receiver]:
    process = Receiver(abuse_settings, tmp_path / "receiver.log")
    yield process
    process.terminate()


def assert_clean_logs(text: str) -> None:
    for forbidden in FORBIDDEN_IN_LOGS:
        assert forbidden not in text, next(line for line in text.splitlines() if forbidden in line)
