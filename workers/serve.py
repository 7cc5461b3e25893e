"""`ecwid-relay serve`: the receiver under uvicorn.

This module imports the receiver (and so Starlette) only when called, so the
worker entry points never load it.
"""

from __future__ import annotations

import uvicorn

from workers import logs
from workers.settings import Settings

# Long enough for in-flight requests to get their answer on SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 20


def run(settings: Settings, *, host: str, port: int, processes: int = 1) -> int:
    logs.configure(settings.log_level, role="receiver")
    options = dict(
        host=host,
        port=port,
        log_config=None,  # our JSON logging, configured above, handles uvicorn's loggers
        access_log=False,  # receiver/middleware.py logs requests without query strings
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
    )
    if processes > 1:
        uvicorn.run("receiver.app:from_env", factory=True, workers=processes, **options)  # type: ignore[arg-type]
    else:
        from receiver.app import create_app

        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
    return 0
