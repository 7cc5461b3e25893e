"""Reading request bodies: a hard size limit, and strict JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request

from receiver.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType

MAX_BODY = 1024 * 1024
# The whole body must arrive within this time: a client trickling bytes (slow-loris) would
# otherwise hold a connection and its buffer for as long as it likes. Ecwid sends < 10 KiB.
BODY_SECONDS = 10.0


async def read(request: Request, limit: int = MAX_BODY) -> bytes:
    """The whole body; raises PayloadTooLarge as soon as it is known to exceed `limit`,
    RequestTimeout when it takes longer than BODY_SECONDS to arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length must be a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            async for chunk in request.stream():
                chunks.extend(chunk)
                if len(chunks) > limit:
                    raise PayloadTooLarge(f"body is larger than {limit} bytes")
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {BODY_SECONDS:.0f} seconds") from None
    return bytes(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


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
