"""Scenario 8: callback URLs aimed inside the network are refused at delivery time, no packet sent.

The worker runs with RELAY_CALLBACK_ALLOW_NETS empty (the production default) and a
tripwire (tests/support/tripwire): every connect() it attempts, other than to Redis, is
written down, and one to a non-loopback address is blocked, so even a broken guard can
send nothing off this machine. Loopback targets point at a listener that must see nothing.
Hostnames under `.relay-test` resolve, in the worker only, to the addresses a hostile DNS
server would give.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AUTH, ROOT
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.ledger import Answer, LedgerServer
from tests.support.processes import TRIPWIRE_DIR, Receiver, Worker
from workers.settings import Settings

HOSTS = {
    "loopback.relay-test": "127.0.0.1",
    "mapped.relay-test": "::ffff:127.0.0.1",
    "private.relay-test": "10.1.2.3",
    "metadata.relay-test": "169.254.169.254",
    "cgnat.relay-test": "100.64.0.7",
    "home.relay-test": "192.168.0.10",
}


def targets(port: int) -> list[str]:
    loopback = [f"http://{host}:{port}/hook" for host in
                ("127.0.0.1", "127.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "[::]",
                 "2130706433", "0x7f000001", "loopback.relay-test", "mapped.relay-test")]  # fmt: skip
    inside = [
        "http://10.0.0.1/hook", "http://10.255.255.254:8443/hook",
        "http://172.16.0.1/hook", "http://172.31.255.254/hook",
        "http://192.168.0.1/hook", "http://192.168.255.254/hook",
        "http://100.64.0.1/hook", "http://100.127.255.254/hook",
        "http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/",
        "http://[fd00::1]/hook", "http://[fe80::1]/hook", "http://[::ffff:10.0.0.1]/hook",
        "http://[64:ff9b::a9fe:a9fe]/hook", "http://[2002:a9fe:a9fe::]/hook",
        "http://private.relay-test/hook", "http://metadata.relay-test/latest/meta-data/",
        "http://cgnat.relay-test/hook", "http://home.relay-test:8080/hook",
    ]  # fmt: skip
    return loopback + inside


def tripwire_env(path: Path, redis_port: int) -> dict[str, str]:
    return {
        "PYTHONPATH": f"{TRIPWIRE_DIR}:{ROOT}",
        "RELAY_TEST_TRIPWIRE": str(path),
        "RELAY_TEST_QUIET_PORTS": str(redis_port),
        "RELAY_TEST_HOSTS": ",".join(f"{name}={address}" for name, address in HOSTS.items()),
    }


def wait_failed(api: httpx.Client, instance_ids: list[int], timeout: float = 60) -> dict[int, dict[str, Any]]:
    """Each instance's one notification, once it is FAILED."""
    end = time.monotonic() + timeout
    found: dict[int, dict[str, Any]] = {}
    while len(found) < len(instance_ids):
        for instance_id in instance_ids:
            if instance_id not in found:
                page = api.get(f"/instances/{instance_id}/events", headers={"Authorization": AUTH}).json()
                if page and page[0]["status"] == "FAILED":
                    found[instance_id] = page[0]
        assert time.monotonic() < end, f"not failed in {timeout}s: {sorted(set(instance_ids) - set(found))}"
        time.sleep(0.2)
    return found


def test_internal_callbacks_are_refused_without_a_packet(
    abuse_settings: Settings, redis_server: Any, tmp_path: Path
) -> None:
    listener = LedgerServer()
    tripwire = tmp_path / "tripwire"
    tripwire.touch()
    receiver = Receiver(abuse_settings, tmp_path / "receiver.log")
    worker = Worker(abuse_settings, tmp_path / "worker.log", "ssrf-w", **tripwire_env(tripwire, redis_server.port))
    try:
        with receiver.client() as api:
            urls = targets(listener.port)
            instances = []
            for n, url in enumerate(urls):
                instances.append(create_custom(api, url, store_id=5000 + n)["id"])
                assert post_webhook(api, webhook(f"ssrf-{n}", store_id=5000 + n)).status_code == 200
            failed = wait_failed(api, instances)
        for instance_id, url in zip(instances, urls, strict=True):
            event = failed[instance_id]
            assert event["reason"].startswith("CallbackRefused: callback host"), (url, event)
            assert len(event["attempts"]) == 1, (url, event)  # refused for good: no retries
        connects = tripwire.read_text().split()
        print(f"\n[faults] ssrf: targets={len(urls)} refused={len(failed)} connects_attempted={len(connects) // 2}"
              f" listener_connections={len(listener.arrivals)}")  # fmt: skip
        assert connects == [], connects
        assert listener.arrivals == []
    finally:
        worker.terminate()
        receiver.terminate()
        listener.close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_to_internal_addresses_are_not_followed(
    abuse_settings: Settings, redis_server: Any, tmp_path: Path, status: int
) -> None:
    """The first hop must be allowed for a redirect to happen at all: only 127.0.0.2 is."""
    settings = replace(abuse_settings, callback_allow_nets=(ipaddress.ip_network("127.0.0.2/32"),))
    listener = LedgerServer()
    destinations = [f"http://127.0.0.1:{listener.port}/stolen", "http://169.254.169.254/latest/meta-data/",
                    "http://10.0.0.1/", "http://metadata.relay-test/"]  # fmt: skip
    hops = iter(destinations * 3)
    redirector = LedgerServer(lambda event_id, attempt: Answer(status, {"Location": next(hops)}), host="127.0.0.2")
    tripwire = tmp_path / "tripwire"
    tripwire.touch()
    receiver = Receiver(settings, tmp_path / "receiver.log")
    worker = Worker(
        settings, tmp_path / "worker.log", f"redirect-w{status}", **tripwire_env(tripwire, redis_server.port)
    )
    try:
        with receiver.client() as api:
            for n in range(len(destinations)):
                create_custom(api, redirector.url, store_id=6000 + n)
                assert post_webhook(api, webhook(f"redirect-{status}-{n}", store_id=6000 + n)).status_code == 200
            end = time.monotonic() + 30
            while len(redirector.arrivals) < len(destinations):
                assert time.monotonic() < end, "the redirector was not asked"
                time.sleep(0.1)
            time.sleep(1.0)  # time enough to follow a redirect, were it followed
        connects = tripwire.read_text().split()
        assert set(connects[::2]) == {"127.0.0.2"}, connects
        assert listener.arrivals == []
        assert len(redirector.arrivals) == len(destinations)
    finally:
        worker.terminate()
        receiver.terminate()
        listener.close()
        redirector.close()
