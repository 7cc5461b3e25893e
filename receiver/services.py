"""The long-lived clients a receiver process shares across requests.

Built in the app's lifespan (receiver/app.py) and reached from a request with
`services(request)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis
from starlette.requests import Request

from receiver.ingest_store import IngestStore
from receiver.instance_store import InstanceStore
from workers.settings import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    instances: InstanceStore
    inbox: IngestStore
    http: httpx.AsyncClient


def services(request: Request) -> Services:
    found = request.scope["state"]["services"]  # what request.state.services reads, without its wrapper
    assert isinstance(found, Services)
    return found
