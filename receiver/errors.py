"""The receiver's exceptions, and the one place they become HTTP responses.

    RelayError                  -> its own status, {"requestId", "message"}
    ├── BadRequest              400  the request is malformed or incomplete
    ├── Unauthorized            401  missing or wrong credentials or signature
    ├── NotFound                404  no such thing, or not yours
    ├── RequestTimeout          408  the body did not arrive in time (slow-loris)
    ├── Conflict                409  changed concurrently; retry
    ├── PayloadTooLarge         413  body over the limit
    ├── UnsupportedMediaType    415  body type we do not read
    ├── UpstreamError           502  Ecwid failed us (carries providerMessage)
    └── Unavailable             503  Redis is unreachable; nothing was stored

Starlette's own HTTPException (routing 404/405) and Redis connection errors are
mapped here too. Anything else is a bug: 500, logged with its traceback.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

import redis.exceptions
import structlog
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from receiver import metrics

log = structlog.get_logger(logger_name="receiver.errors")


class RelayError(Exception):
    status_code = 500
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, provider_message: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider_message = provider_message


class BadRequest(RelayError):
    status_code = 400


class Unauthorized(RelayError):
    status_code = 401


class NotFound(RelayError):
    status_code = 404


class RequestTimeout(RelayError):
    status_code = 408
    headers = {"Connection": "close"}  # a client that trickles gets no second request on this connection


class Conflict(RelayError):
    status_code = 409


class PayloadTooLarge(RelayError):
    status_code = 413


class UnsupportedMediaType(RelayError):
    status_code = 415


class UpstreamError(RelayError):
    status_code = 502


class Unavailable(RelayError):
    status_code = 503


_RANDOM = bytearray()


def new_request_id() -> str:
    """24 hex digits from the OS's CSPRNG, drawn 3 KiB at a time: one system call per 256 ids."""
    global _RANDOM
    if not _RANDOM:
        _RANDOM = bytearray(secrets.token_bytes(12 * 256))
    chunk = _RANDOM[-12:]
    del _RANDOM[-12:]
    return chunk.hex()


def request_id(request: Request) -> str:
    state: dict[str, Any] = request.scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = new_request_id()
    return str(state["request_id"])


def error_response(
    request: Request, status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"requestId": request_id(request), "message": message}
    body.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(body, status_code=status, headers=headers)


def _reason(exc: Exception) -> str:
    """BadRequest -> bad_request: the label /metrics counts rejected events by."""
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


async def relay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RelayError)
    metrics.rejected(request, _reason(exc))
    log.info("request.rejected", status=exc.status_code, reason=exc.message)
    return error_response(
        request, exc.status_code, exc.message, headers=exc.headers, providerMessage=exc.provider_message
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such resource", 405: f"method {request.method} not allowed here"}
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(request, exc.status_code, message, headers=exc.headers)


async def redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis.unavailable", error=f"{type(exc).__name__}: {exc}")
    metrics.rejected(request, "unavailable")
    return error_response(request, 503, "storage is unavailable; nothing was stored, try again")


async def redis_refused(request: Request, exc: Exception) -> Response:
    """Redis answered but refused the write: out of memory (maxmemory with noeviction), too few
    replicas (min-replicas-to-write), or it cannot persist (MISCONF). Nothing was stored."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or REFUSAL.search(str(exc)):
        return await redis_down(request, exc)
    return await internal_error(request, exc)


# Error replies with which Redis refuses a write it would take another time; inside a Lua script
# (Redis 6) they come wrapped: "Error running script ...: @user_script:1: -OOM command not allowed ...".
REFUSAL = re.compile(r"(?:^|-)(?:OOM|NOREPLICAS|MISCONF|READONLY|LOADING|MASTERDOWN|NOMASTERLINK)\b")


async def client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up mid-body; nothing was stored and nobody is listening.
    log.info("request.client_disconnected")
    metrics.rejected(request, "client_disconnected")
    return error_response(request, 400, "client disconnected before the body was complete")


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error("request.crashed", exc_info=exc)
    return error_response(request, 500, "internal error")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    RelayError: relay_error,
    HTTPException: http_error,
    redis.exceptions.ConnectionError: redis_down,
    redis.exceptions.TimeoutError: redis_down,
    redis.exceptions.BusyLoadingError: redis_down,
    redis.exceptions.ReadOnlyError: redis_down,
    redis.exceptions.OutOfMemoryError: redis_down,
    redis.exceptions.ResponseError: redis_refused,
    ClientDisconnect: client_gone,
    Exception: internal_error,
}
