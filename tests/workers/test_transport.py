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
        client.post(f"http://{host}:{sink.port}/hook", b"{}", {})
    time.sleep(0.1)
    assert sink.received == []


def test_guard_lets_allowed_networks_through(sink: CallbackServer) -> None:
    with callback_client(LOOPBACK) as client:
        answer = client.post(f"http://localhost:{sink.port}/hook", b"{}", {"Content-Type": "application/json"})
    assert (answer.status, answer.excerpt) == (200, b"{}")
    [received] = sink.received
    assert (received.method, received.path, received.body) == ("POST", "/hook", b"{}")
    assert received.headers["content-type"] == "application/json"
    assert received.headers["user-agent"] == "ecwid-relay/0.1"


def test_redirects_are_not_followed(sink: CallbackServer) -> None:
    sink.script.append(Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data"}))
    with callback_client(LOOPBACK) as client:
        answer = client.post(f"{sink.url}/hook", b"{}", {})
    assert answer.status == 302
    assert answer.headers["location"] == "http://169.254.169.254/latest/meta-data"
    assert len(sink.received) == 1


def test_cookies_one_endpoint_sets_are_never_sent_anywhere(sink: CallbackServer) -> None:
    # Endpoints of different instances can share a host: one must not see another's cookies.
    sink.script.append(Reply(200, b"{}", {"Set-Cookie": "session=theirs; Path=/"}))
    with callback_client(LOOPBACK) as client:
        client.post(f"{sink.url}/first", b"{}", {})
        client.post(f"{sink.url}/second", b"{}", {})
    first, second = sink.wait_for(2)
    assert (first.path, second.path) == ("/first", "/second")
    assert "cookie" not in second.headers


def test_a_large_answer_is_read_only_up_to_the_limit(sink: CallbackServer) -> None:
    sink.script.append(Reply(500, b"x" * 200_000))
    with callback_client(LOOPBACK) as client:
        answer = client.post(f"{sink.url}/hook", b"{}", {}, read=1000)
        assert answer.status == 500
        assert 1000 <= len(answer.excerpt) < 200_000
        # The connection it could not finish reading is dropped, not reused half-read.
        assert client.post(f"{sink.url}/hook", b"{}", {}).status == 200
    assert len(sink.received) == 2


def test_deadline_bounds_the_whole_exchange(sink: CallbackServer) -> None:
    sink.script.append(Reply(200, b"{}", delay=3.0))
    started = time.monotonic()
    with callback_client(LOOPBACK) as client, pytest.raises(httpx.TimeoutException), deadline(0.5):
        client.post(f"{sink.url}/hook", b"{}", {})
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("address", ["64:ff9b:1::a9fe:a9fe", "::a9fe:a9fe", "::ffff:0:a9fe:a9fe", "fec0::1"])
def test_ipv6_outside_global_unicast_is_refused(address: str) -> None:
    assert not address_allowed(address, ())
