"""The outbound HTTP client: an SSRF guard at connect time and a whole-exchange deadline.

Callback URLs are user input. Checking them when they are written is not enough,
because DNS can change afterwards (rebinding), so the check runs where the socket
is opened: a custom httpcore network backend resolves the host, keeps only
addresses we may reach, and connects to those literal addresses. TLS still
verifies the original host name, because httpcore passes it to `start_tls`.

The same backend wraps every stream so that reads and writes share one deadline:
connect, send and receive together never take longer than the caller allowed.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import time
import typing
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore
import httpx

from workers.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_deadline: ContextVar[float | None] = ContextVar("relay_http_deadline", default=None)


class CallbackRefused(Exception):
    """The callback host resolves only to addresses we must not connect to (SSRF guard).

    Raised before any packet is sent to such an address. Not retryable by nature.
    """


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(address: str, allow_nets: Sequence[IPNetwork]) -> bool:
    """May we connect to `address`? Pure.

    Allowed: addresses inside `allow_nets`, and otherwise only globally routable
    unicast addresses. Refused: loopback, private, link-local (so cloud metadata),
    CGNAT, unspecified, multicast and reserved, including IPv6 forms that embed them.
    """
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[IPAddress] = [ip]
    inner = embedded_ipv4(ip)
    if inner is not None:
        candidates.append(inner)
    if any(candidate in net for candidate in candidates for net in allow_nets):
        return True
    target = candidates[-1]
    if isinstance(target, ipaddress.IPv6Address) and target not in _GLOBAL_UNICAST_V6:
        # Only 2000::/3 is global unicast; other "global" prefixes (IPv4-compatible, SIIT,
        # local-use NAT64, site-local) can route to internal networks.
        return False
    return all(candidate.is_global and not candidate.is_multicast for candidate in candidates)


def resolve(host: str, port: int) -> list[str]:
    """All addresses `host` resolves to, in resolver order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation inside this block shares one budget of `seconds`."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _budget(timeout: float | None, error: type[Exception]) -> float | None:
    end = _deadline.get()
    if end is None:
        return timeout
    remaining = end - time.monotonic()
    if remaining <= 0:
        raise error("the delivery deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: typing.Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to vetted addresses, and applies the current deadline."""

    def __init__(self, allow_nets: Sequence[IPNetwork]) -> None:
        self._allow_nets = tuple(allow_nets)
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        allowed = [address for address in addresses if address_allowed(address, self._allow_nets)]
        if not allowed:
            raise CallbackRefused(
                f"callback host {host} resolves only to refused addresses ({', '.join(addresses[:4])})"
            )
        error: Exception | None = None
        for address in allowed:
            try:
                stream = self._inner.connect_tcp(
                    address, port, _budget(timeout, httpcore.ConnectTimeout), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        assert error is not None
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: typing.Iterable[typing.Any] | None = None
    ) -> httpcore.NetworkStream:
        raise CallbackRefused("unix sockets are never callback targets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with its connection pool on the guarded backend."""

    def __init__(self, allow_nets: Sequence[IPNetwork], limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx offers no public hook for the network backend; httpcore's pool does.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_nets),
        )


CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
USER_AGENT = "ecwid-relay/0.1"


@dataclass(frozen=True)
class Answer:
    """What a callback endpoint answered: its status, headers and the start of its body."""

    status: int
    headers: httpx.Headers
    excerpt: bytes


class CallbackClient:
    """The one HTTP client a worker process uses for callbacks.

    Posts through httpx's transport (its connection pool, keep-alive, timeouts and
    exception mapping) without `httpx.Client` around it: a callback needs none of
    the client's per-request machinery (cookies, which would carry one endpoint's
    cookies to the next, auth, redirects, event hooks), and skipping it saves about
    a third of the CPU a POST costs (docs/performance.md). Never follows redirects
    (a 3xx is an answer like any other), ignores proxy variables (a proxy would hide
    the real destination from the guard), connects within 3 s.
    """

    def __init__(self, allow_nets: Sequence[IPNetwork]) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0)
        self._transport = GuardedTransport(allow_nets, limits)
        self._extensions = {"timeout": httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT).as_dict()}

    def post(self, url: str, body: bytes, headers: dict[str, str], *, read: int = 65536) -> Answer:
        """POST `body` to `url` once, within TOTAL_TIMEOUT for the whole exchange (or the
        caller's tighter `deadline`), and read at most `read` bytes of the answer, so that a
        well-behaved small answer leaves the connection reusable.

        Raises `CallbackRefused` (the guard), `httpx.InvalidURL` or `ValueError` (a URL or
        header we cannot send), `httpx.HTTPError` (network, timeouts, a broken answer).
        """
        headers = {"User-Agent": USER_AGENT, **headers}
        request = httpx.Request("POST", _parse(url), headers=headers, content=body, extensions=self._extensions)
        # `deadline()` unrolled: a generator-based context manager per POST showed in profiles.
        token = _deadline.set(time.monotonic() + TOTAL_TIMEOUT) if _deadline.get() is None else None
        try:
            response = self._transport.handle_request(request)
            try:
                chunks = bytearray()
                for chunk in typing.cast(httpx.SyncByteStream, response.stream):
                    chunks.extend(chunk)
                    if len(chunks) >= read:
                        break
            finally:
                response.close()
        finally:
            if token is not None:
                _deadline.reset(token)
        return Answer(response.status_code, response.headers, bytes(chunks))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> CallbackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.lru_cache(maxsize=4096)
def _parse(url: str) -> httpx.URL:
    """A callback URL, parsed once: a worker posts to few URLs, many times each."""
    return httpx.URL(url)


def callback_client(allow_nets: Sequence[IPNetwork]) -> CallbackClient:
    """The callback client of a worker process (see `CallbackClient`)."""
    return CallbackClient(allow_nets)
