"""What a delivery job needs from its worker process, built once at worker start.

RQ calls job functions with their arguments only, so the worker entry point
installs one `WorkerContext` per process (as arq's `ctx`), and jobs read it.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import redis

from workers.settings import Settings
from workers.transport import CallbackClient


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    redis: redis.Redis
    client: CallbackClient  # callbacks: behind the SSRF guard (workers/transport.py)
    ecwid: httpx.Client  # Ecwid's REST API, for the poller (workers/ecwid_api.py)


_current: WorkerContext | None = None


def install(context: WorkerContext) -> None:
    global _current
    _current = context


def current() -> WorkerContext:
    """The context of this worker process; raises RuntimeError outside a worker."""
    if _current is None:
        raise RuntimeError("no worker context: jobs run only inside `ecwid-relay worker`")
    return _current
