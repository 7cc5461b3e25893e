"""Loaded (as `sitecustomize`) by worker processes of the SSRF tests only.

Two test-only stand-ins for the network around the worker:

* a resolver for names ending in `.relay-test`: RELAY_TEST_HOSTS="name=addr,name=addr"
  answers them the way a hostile DNS server would, without any DNS traffic;
* a tripwire: every `socket.connect` to an address that is not the local Redis is
  appended to RELAY_TEST_TRIPWIRE, and one to a non-loopback address is blocked, so a
  broken SSRF guard can never send a packet off this machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

_HOSTS = dict(pair.split("=", 1) for pair in os.environ.get("RELAY_TEST_HOSTS", "").split(",") if "=" in pair)
_TRIPWIRE = os.environ.get("RELAY_TEST_TRIPWIRE")
_ALLOWED_PORTS = {int(p) for p in os.environ.get("RELAY_TEST_QUIET_PORTS", "").split(",") if p}
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.endswith(".relay-test"):
        if name not in _HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = _HOSTS[name]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
    return _real_getaddrinfo(host, port, *args, **kwargs)


def _audit(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    if event != "socket.connect" or _TRIPWIRE is None:
        return
    address = args[1]
    if not isinstance(address, tuple):
        return  # unix sockets
    host, port = str(address[0]), int(address[1])
    if port in _ALLOWED_PORTS:
        return
    with open(_TRIPWIRE, "a") as tripwire:
        tripwire.write(f"{host} {port}\n")
    try:
        loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise PermissionError(f"tripwire: connect to {host}:{port} blocked in tests")


if _HOSTS:
    socket.getaddrinfo = _getaddrinfo
if _TRIPWIRE:
    sys.addaudithook(_audit)
