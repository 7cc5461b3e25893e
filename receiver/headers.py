"""Request headers by name, read from the ASGI scope once per request.

Starlette's `request.headers.get(name)` scans the raw header list and re-encodes the name
on every call; ingest asks five or six times per request. Here the first call indexes the
list (first value wins, as with Starlette) and each lookup is one dict access.
"""

from __future__ import annotations

from starlette.requests import Request

_KEY = "relay.headers"


def header(request: Request, name: bytes) -> str | None:
    """The first value of header `name` (lowercase bytes, as ASGI gives names), or None."""
    index: dict[bytes, bytes] | None = request.scope.get(_KEY)
    if index is None:
        index = request.scope[_KEY] = {}
        for key, value in request.scope["headers"]:
            index.setdefault(key, value)
    value = index.get(name)
    return None if value is None else value.decode("latin-1")
