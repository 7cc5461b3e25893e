"""The access line: one JSON line per request, rendered by one processor.

The process-wide structlog chain (workers/logs.py) runs eight processors per line and
renders with the stdlib's json; at one access line per request that was a tenth of an
ingest's CPU time. `_render` does the same work in one step: the request's bound context,
the level, the UTC timestamp and the logger name, the same redaction of credential-named
keys (workers.logs.redact), rendered by orjson. Only the access line goes this way, at the
level logging was configured with; every other line keeps the shared chain.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from workers import logs

LOGGER = "receiver.access"
# Where a request's handler leaves fields for its access line only (ASGI lets apps add scope keys).
SCOPE_KEY = "relay.access"
_UTC = datetime.UTC


def _render(_: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
    """merge_contextvars, add_log_level, TimeStamper(iso, utc), the logger name, redact and
    JSONRenderer of the shared chain, in one processor."""
    line = structlog.contextvars.get_contextvars()
    line.update(event_dict)
    line["level"] = method_name
    line["timestamp"] = datetime.datetime.now(_UTC)  # orjson writes it as ISO 8601 with Z, as structlog did
    line["logger"] = LOGGER
    logs.redact(None, method_name, line)
    return orjson.dumps(line, option=orjson.OPT_UTC_Z, default=repr).decode()


def note(scope: MutableMapping[str, Any], **fields: Any) -> None:
    """Fields for this request's access line (the outcome), without binding them to the context
    of every line: cheaper, and nothing else logged in the request needs them."""
    scope.setdefault(SCOPE_KEY, {}).update(fields)


class TickWriter:
    """Writes the lines logged during one turn of the event loop in one write and one flush,
    at the end of that turn (structlog's WriteLogger makes a write and a flush per line: a
    system call per request). Without a running loop a line is written at once; what is
    pending at exit is written then. A kill -9 can lose the lines of the last turn only,
    which never hold anything but access lines."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: list[str] = []
        atexit.register(self.flush)

    def msg(self, message: str) -> None:
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: nothing would flush later
                self._stream.write(message + "\n")
                self._stream.flush()
                return
        self._pending.append(message + "\n")

    info = msg

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self._stream.write("".join(lines))
            self._stream.flush()


class AccessLog:
    """`info(event, **fields)` writes an access line, if the configured level lets info lines
    through (create it after logs.configure). It calls the one processor itself: structlog's
    bound-logger dispatch around a one-processor chain cost as much as the processor."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._writer = TickWriter(stream or sys.stdout)
        self._enabled: bool = structlog.get_logger().is_enabled_for(logging.INFO)

    def info(self, event: str, **fields: Any) -> None:
        if self._enabled:
            fields["event"] = event
            self._writer.msg(_render(None, "info", fields))
