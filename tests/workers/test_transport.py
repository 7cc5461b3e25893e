"""The SSRF guard and the delivery deadline, against real local sockets."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import CallbackServer, Reply
from workers.transport import CallbackRefused, address_allowed, callback_client, deadline

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "::",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::",
        "64:ff9b::a9fe:a9fe",
        "224.0.0.1",
        "255.255.255.255",
        "not-an-ip",
    ],
)
def test_refused_addresses(address: str) -> None:
    assert not address_allowed(address, ())


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_allowed(address: str) -> None:
    assert address_allowed(address, ())


def test_allow_nets_let_loopback_through() -> None:
    assert address_allowed("127.0.0.1", LOOPBACK)
    assert address_allowed("::ffff:127.0.0.1", LOOPBACK)
    assert not address_allowed("10.0.0.1", LOOPBACK)


@pytest.fixture
def sink() -> Iterator[CallbackServer]:
    server = CallbackServer()
    yield server
    server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "localhost", "[::ffff:127.0.0.1]"])
def test_guard_refuses_before_connecting(sink: CallbackServer, host: str) -> None:
    with callback_client(()) as client, pytest.raises(CallbackRefused):
        client.post(f"http://{host}:{sink.port}/hook", content=b"{}")
    time.sleep(0.1)
    assert sink.received == []


def test_guard_lets_allowed_networks_through(sink: CallbackServer) -> None:
    with callback_client(LOOPBACK) as client:
        response = client.post(f"http://localhost:{sink.port}/hook", content=b"{}")
    assert response.status_code == 200
    assert len(sink.received) == 1


def test_redirects_are_not_followed(sink: CallbackServer) -> None:
    sink.script.append(Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data"}))
    with callback_client(LOOPBACK) as client:
        response = client.post(f"{sink.url}/hook", content=b"{}")
    assert response.status_code == 302
    assert len(sink.received) == 1


def test_deadline_bounds_the_whole_exchange(sink: CallbackServer) -> None:
    sink.script.append(Reply(200, b"{}", delay=3.0))
    started = time.monotonic()
    with callback_client(LOOPBACK) as client, pytest.raises(httpx.TimeoutException), deadline(0.5):
        client.post(f"{sink.url}/hook", content=b"{}")
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("address", ["64:ff9b:1::a9fe:a9fe", "::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "fec0::1"])
def test_ipv6_outside_global_unicast_is_refused(address: str) -> None:
    assert not address_allowed(address, ())
