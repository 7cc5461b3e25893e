"""Relay processes for the fault and abuse suites: `ecwid-relay serve` and `ecwid-relay worker`,
started as real subprocesses so that they can be killed, stopped and have their logs read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.support.servers import free_port
from workers.settings import Settings

TRIPWIRE_DIR = Path(__file__).resolve().parent / "tripwire"


def relay_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a relay process configured like `settings`, secrets included."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(
        RELAY_REDIS_URL=settings.redis_url or "",
        RELAY_CALLBACK_ALLOW_NETS=",".join(str(net) for net in settings.callback_allow_nets),
        RELAY_LOG_LEVEL=settings.log_level,
        RELAY_ECWID_OAUTH_URL=settings.ecwid_oauth_url,
        RELAY_ECWID_API_URL=settings.ecwid_api_url,
        RELAY_ECWID_CLIENT_SECRETS=",".join(s.value for s in settings.ecwid_client_secrets),
        RELAY_USER_SECRETS=",".join(s.value for s in settings.user_secrets),
        RELAY_EVENT_RETENTION=str(settings.event_retention),
        PYTHONPATH=str(ROOT),
    )
    if settings.organization_secret is not None:
        env["RELAY_ORGANIZATION_SECRET"] = settings.organization_secret.value
    env.update(extra)
    return env


class RelayProcess:
    """One `ecwid-relay` subprocess whose stdout and stderr go to `log_path`."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args], env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while text not in self.logs():
            if not self.alive():
                raise RuntimeError(f"process exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            if time.monotonic() > end:
                raise AssertionError(f"{text!r} not in log:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no handler runs, no cleanup happens."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._log.close()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit code (SIGKILL after `timeout`)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class Worker(RelayProcess):
    """`ecwid-relay worker --name NAME`."""

    def __init__(self, settings: Settings, log_path: Path, name: str, *, wait: bool = True, **env: str) -> None:
        self.name = name
        super().__init__(["worker", "--name", name], relay_env(settings, **env), log_path)
        if wait:
            self.wait_for_log("Listening on")


class Receiver(RelayProcess):
    """`ecwid-relay serve` on a free loopback port; ready once /health answers."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            ["serve", "--host", "127.0.0.1", "--port", str(self.port)], relay_env(settings, **env), log_path
        )
        end = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.alive() or time.monotonic() > end:
                raise RuntimeError(f"receiver did not start:\n{self.logs()[-3000:]}")
            time.sleep(0.05)

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **options)  # type: ignore[arg-type]
