"""`ecwid-relay serve`: the receiver under uvicorn.

This module imports the receiver (and so Starlette) only when called, so the
worker entry points never load it.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from workers import logs
from workers.settings import Settings

# Long enough for in-flight requests to get their answer on SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 20


def uvicorn_options(host: str, port: int) -> dict[str, Any]:
    """How the receiver runs under uvicorn; the benchmark's bare endpoint runs with the same."""
    return dict(
        host=host,
        port=port,
        log_config=None,  # our JSON logging, configured in run(), handles uvicorn's loggers
        access_log=False,  # receiver/middleware.py logs requests without query strings
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )


def run(settings: Settings, *, host: str, port: int, processes: int = 1) -> int:
    logs.configure(settings.log_level, role="receiver")
    options = uvicorn_options(host, port)
    if processes > 1:
        uvicorn.run("receiver.app:from_env", factory=True, workers=processes, **options)
    else:
        from receiver.app import create_app

        uvicorn.run(create_app(settings), **options)
    return 0
