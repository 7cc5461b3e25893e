"""Logging: one JSON line per event, from structlog and from the libraries alike.

Call `configure()` once per process, before anything logs. Context (request_id,
event_id, instance_id, ...) is bound with structlog's contextvars and shows up on
every line logged while it is bound.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Defence in depth: these never reach a log line, even if someone binds them by mistake.
_SENSITIVE = ("secret", "token", "authorization", "signature", "password", "apikey", "api_key")


@functools.lru_cache(maxsize=4096)
def _sensitive(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SENSITIVE)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask values whose key names a credential."""
    for key in [key for key in event_dict if _sensitive(key)]:
        event_dict[key] = "[redacted]"
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # uvicorn logs every message twice, once with ANSI colours in `color_message`.
    event_dict.pop("color_message", None)
    return event_dict


def _logger_name(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Our loggers bind `logger_name` (structlog reserves `logger`); stdlib ones get `logger`.
    if "logger_name" in event_dict:
        event_dict["logger"] = event_dict.pop("logger_name")
    return event_dict


def configure(level: str = "info", role: str = "relay") -> None:
    """Send structlog and stdlib logging (uvicorn, rq, httpx) to stdout as JSON lines."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        _logger_name,
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request URL at INFO; callback URLs may carry tokens in their query.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(role=role)
