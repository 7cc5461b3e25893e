"""Per-request context: a request id, structlog context, and one access-log line.

This is a pure ASGI middleware (not BaseHTTPMiddleware) so that the context it
binds is visible to the handlers and the access line. The access line carries
the path only: query strings can hold secrets (the legacy ION `secret`).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from receiver import access_log
from receiver.access_log import SCOPE_KEY, AccessLog
from receiver.errors import new_request_id


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = AccessLog()  # Starlette builds the middleware at the first request: logging is set up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        # uvicorn runs each request in a task of its own, with a copy of the server's context:
        # what one request binds never reaches another, so there is nothing to clear first.
        access_log.bind(scope, role="receiver", request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            line = scope.setdefault(SCOPE_KEY, {})
            line["event"] = "request"
            line["method"] = scope["method"]
            line["path"] = scope["path"]
            line["status"] = status
            line["ms"] = round((time.perf_counter() - started) * 1000, 2)
            self.log.write(line)
