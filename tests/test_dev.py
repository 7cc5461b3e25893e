"""`ecwid-relay dev` as a user runs it: a subprocess on free ports, driven over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, free_port


@contextmanager
def dev_stack(data_dir: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RELAY_")}
    env.update(RELAY_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "dev", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        end = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            process.wait(40)


def read_secrets(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_dev_runs_the_whole_relay_and_keeps_data(tmp_path: Path) -> None:
    data_dir, log, port = tmp_path / "relay", tmp_path / "dev.log", free_port()
    callbacks = CallbackServer()
    try:
        with dev_stack(data_dir, port, log) as process:
            secrets = read_secrets(data_dir / "secrets.env")
            assert set(secrets) == {"RELAY_ORGANIZATION_SECRET", "RELAY_USER_SECRETS", "RELAY_ECWID_CLIENT_SECRETS"}
            auth = f"User {secrets['RELAY_USER_SECRETS']}, Organization {secrets['RELAY_ORGANIZATION_SECRET']}"
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
                instance = create_custom(api, f"{callbacks.url}/hook", auth=auth)
                accepted = post_webhook(api, webhook(), secret=secrets["RELAY_ECWID_CLIENT_SECRETS"])
                assert accepted.status_code == 200 and accepted.json()["message"] == "accepted"
                [delivery] = callbacks.wait_for(1, timeout=10)
                assert delivery.json()["message"]["instanceId"] == instance["id"]
        assert process.returncode == 0
        text = log.read_text()
        assert "stopped" in text
        assert '"scheduler.started"' in text and '"scheduler.stopped"' in text  # polling scheduler, stopped cleanly
        # Secrets are printed once, when generated, and never logged as values afterwards.
        assert text.count(secrets["RELAY_ORGANIZATION_SECRET"]) == 1
        assert (data_dir / "redis" / "relay.aof").stat().st_size > 0

        # A second start reuses the secrets and the data (AOF) and prints no secret.
        with dev_stack(data_dir, port, log):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
                listed = api.get("/instances", headers={"Authorization": auth})
                assert [i["id"] for i in listed.json()] == [instance["id"]]
                again = post_webhook(api, webhook(), secret=secrets["RELAY_ECWID_CLIENT_SECRETS"])
                assert again.json()["message"].startswith("duplicate")
        assert log.read_text().count(secrets["RELAY_ORGANIZATION_SECRET"]) == 1
        assert len(callbacks.received) == 1
    finally:
        callbacks.close()
