"""The receiver's exceptions, and the one place they become HTTP responses.

    RelayError                  -> its own status, {"requestId", "message"}
    ├── BadRequest              400  the request is malformed or incomplete
    ├── Unauthorized            401  missing or wrong credentials or signature
    ├── NotFound                404  no such thing, or not yours
    ├── Conflict                409  changed concurrently; retry
    ├── PayloadTooLarge         413  body over the limit
    ├── UnsupportedMediaType    415  body type we do not read
    ├── UpstreamError           502  Ecwid failed us (carries providerMessage)
    └── Unavailable             503  Redis is unreachable; nothing was stored

Starlette's own HTTPException (routing 404/405) and Redis connection errors are
mapped here too. Anything else is a bug: 500, logged with its traceback.
"""

from __future__ import annotations

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


def new_request_id() -> str:
    return secrets.token_hex(12)


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
    return error_response(request, exc.status_code, exc.message, providerMessage=exc.provider_message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such resource", 405: f"method {request.method} not allowed here"}
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(request, exc.status_code, message, headers=exc.headers)


async def redis_down(request: Request, exc: Exception) -> Response:
    log.warning("redis.unavailable", error=f"{type(exc).__name__}: {exc}")
    metrics.rejected(request, "unavailable")
    return error_response(request, 503, "storage is unavailable; nothing was stored, try again")


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
    ClientDisconnect: client_gone,
    Exception: internal_error,
}
