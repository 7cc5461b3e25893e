"""The receiver's application: Starlette, with a short way in for `POST /events/ecwid`.

Every other request goes through Starlette's stack: the server-error middleware, our
request context, the exception middleware, the router (which tries each route in turn)
and the endpoint wrapper, each wrapping `send` once more. For the ingest path, the one
that takes Ecwid's traffic, that stack cost about as much CPU as the endpoint itself.
`Relay` sends exactly that path and those methods straight to the same endpoint
behind the same request context (receiver/middleware.py), and maps its exceptions with
the same handlers (receiver/errors.py) the way Starlette would: a handled exception is
answered by its handler; anything else gets the `Exception` handler's 500 and is
re-raised for the server to log, as Starlette's ServerErrorMiddleware does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from receiver.middleware import RequestContext

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


class Relay(Starlette):
    def __init__(
        self, *, fast_path: str, fast_methods: tuple[str, ...], fast_endpoint: Endpoint, **options: Any
    ) -> None:
        super().__init__(**options)
        self._fast_path = fast_path
        self._fast_methods = fast_methods
        self._fast = RequestContext(_Endpoint(fast_endpoint, options.get("exception_handlers") or {}))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self._fast_path and scope["method"] in self._fast_methods:
            scope["app"] = self
            await self._fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _Endpoint:
    """An endpoint as an ASGI app, its exceptions answered by `handlers` (looked up by class)."""

    def __init__(self, endpoint: Endpoint, handlers: Mapping[Any, Handler]) -> None:
        self._endpoint = endpoint
        self._handlers = {key: value for key, value in handlers.items() if isinstance(key, type)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await self._endpoint(request)
        except Exception as exc:
            handler = next((self._handlers[cls] for cls in type(exc).__mro__ if cls in self._handlers), None)
            if handler is None:
                raise
            await (await handler(request, exc))(scope, receive, send)
            if self._handlers.get(Exception) is handler:
                raise  # a bug, answered 500: the server logs it too, as under Starlette's stack
            exc.__traceback__ = None  # reused exception instances would accumulate tracebacks
            return
        await response(scope, receive, send)
