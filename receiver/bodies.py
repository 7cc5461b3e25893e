"""Reading request bodies: a hard size limit, and strict JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from receiver.deadlines import Deadlines
from receiver.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from receiver.headers import header

MAX_BODY = 1024 * 1024
# The whole body must arrive within this time: a client trickling bytes (slow-loris) would
# otherwise hold a connection and its buffer for as long as it likes. Ecwid sends < 10 KiB.
BODY_SECONDS = 10.0


# One timer per event loop for all the bodies being read (receiver/deadlines.py).
DEADLINES = Deadlines(BODY_SECONDS)


async def read(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body; raises PayloadTooLarge as soon as it is known to exceed `limit`,
    RequestTimeout when it takes longer than BODY_SECONDS to arrive, ClientDisconnect
    when the client hangs up first.

    Reads the ASGI messages itself rather than through `request.stream()` (an async
    generator per request): this is the only reader of a request's body.
    """
    declared = header(request, b"content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length must be a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    receive = request.receive
    task = asyncio.current_task()
    assert task is not None  # a request is always served by a task
    DEADLINES.start(task)
    try:
        message = await receive()
        body: bytes = message.get("body", b"")
        if message["type"] == "http.request" and not message.get("more_body", False):
            if len(body) > limit:  # a client that did not declare its length
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
            return body  # the usual case: the whole body in one message
        chunks = bytearray(body)
        while message["type"] == "http.request" and message.get("more_body", False):
            if len(chunks) > limit:
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
            message = await receive()
            chunks.extend(message.get("body", b""))
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if len(chunks) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        return bytes(chunks)
    except asyncio.CancelledError:
        if DEADLINES.stop(task):
            raise RequestTimeout(f"the body did not arrive within {BODY_SECONDS:.0f} seconds") from None
        raise
    finally:
        DEADLINES.stop(task)


def media_type(request: Request) -> str:
    return (header(request, b"content-type") or "").split(";", 1)[0].strip().lower()


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's wording changes between releases; the position is what a client needs.
        raise BadRequest(f"body is not valid JSON (line {exc.lineno}, column {exc.colno})") from None


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object; raises 415 for a non-JSON media type, 400 for bad JSON."""
    return (await json_body(request))[1]


async def json_body(request: Request) -> tuple[bytes, dict[str, Any]]:
    """The body's bytes and its JSON object; raises like `json_object`."""
    kind = media_type(request)
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise UnsupportedMediaType(f"send application/json, not {kind[:60]}")
    body = await read(request)
    document = parse_json(body)
    if not isinstance(document, dict):
        raise BadRequest("body must be a JSON object")
    return body, document
