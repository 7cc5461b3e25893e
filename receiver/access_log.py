"""The access line: one JSON line per request, rendered in one step.

The process-wide structlog chain (workers/logs.py) runs eight processors per line and
renders with the stdlib's json; at one access line per request that was a tenth of an
ingest's CPU time. `_render` does the same work in one step: the request's context,
the level, the UTC timestamp and the logger name, the same redaction of credential-named
keys (workers.logs.redact), rendered by orjson straight to bytes. Only the access line
goes this way, at the level logging was configured with; every other line keeps the
shared chain.

A request's context is what `bind` was given (the request context binds the request id,
ingest the event and store): it goes to structlog's context, so every line logged during
the request carries it, and to the request's scope, where the access line reads it.
Reading it back from structlog (`get_contextvars` copies the whole context) cost more
than the rest of the line.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

from workers import logs

LOGGER = "receiver.access"
# Where a request's fields for its access line wait (ASGI lets apps add scope keys).
SCOPE_KEY = "relay.access"
_UTC = datetime.UTC
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
# The keys the receiver itself puts on access lines: none names a credential, so a line made
# of them alone skips the redaction walk. Any other key is checked, as on every other line.
_PLAIN_KEYS = frozenset(
    {"role", "request_id", "event_id", "store_id", "kind", "outcome", "event_type", "targets", "method", "path",
     "status", "ms", "event", "level", "timestamp", "logger"}
)  # fmt: skip


def _render(method_name: str, line: dict[str, Any]) -> bytes:
    """What add_log_level, TimeStamper(iso, utc), the logger name, redact and JSONRenderer of
    the shared chain make of `line`, in one step, as one line of bytes."""
    line["level"] = method_name
    line["timestamp"] = datetime.datetime.now(_UTC)  # orjson writes it as ISO 8601 with Z, as structlog did
    line["logger"] = LOGGER
    if not _PLAIN_KEYS.issuperset(line):
        logs.redact(None, method_name, line)
    return orjson.dumps(line, option=_OPTIONS, default=repr)


def bind(scope: MutableMapping[str, Any], **fields: Any) -> None:
    """Bind `fields` to structlog's context for the rest of this request (every line logged
    in it carries them) and put them on its access line."""
    structlog.contextvars.bind_contextvars(**fields)
    note(scope, **fields)


def note(scope: MutableMapping[str, Any], **fields: Any) -> None:
    """Fields for this request's access line only (the outcome): cheaper than `bind`, and
    nothing else logged in the request needs them."""
    scope.setdefault(SCOPE_KEY, {}).update(fields)


class TickWriter:
    """Writes the lines logged during one turn of the event loop in one write and one flush,
    at the end of that turn (structlog's WriteLogger makes a write and a flush per line: a
    system call per request). Without a running loop a line is written at once; what is
    pending at exit is written then. A kill -9 can lose the lines of the last turn only,
    which never hold anything but access lines.

    The stream is binary (stdout's buffer): the lines are bytes from orjson, and every
    other writer to stdout flushes each line, so nothing waits in the text layer above."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        atexit.register(self.flush)

    def msg(self, line: bytes) -> None:
        """Write `line` (ending in a newline) at the end of this turn of the loop."""
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: nothing would flush later
                self._stream.write(line)
                self._stream.flush()
                return
        self._pending.append(line)

    def flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self._stream.write(b"".join(lines))
            self._stream.flush()


class AccessLog:
    """`write(line)` writes an access line, if the configured level lets info lines through
    (create it after logs.configure). It calls the one processor itself: structlog's
    bound-logger dispatch around a one-processor chain cost as much as the processor."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._writer = TickWriter(stream or sys.stdout.buffer)
        self._enabled: bool = structlog.get_logger().is_enabled_for(logging.INFO)

    def write(self, line: dict[str, Any]) -> None:
        """Render `line` (taken over: it is changed) and write it at the end of this loop turn."""
        if self._enabled:
            self._writer.msg(_render("info", line))
