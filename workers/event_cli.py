"""`ecwid-relay events` and `ecwid-relay replay`: the event log from a shell, for operators.

They read Redis directly (RELAY_REDIS_URL), with no API credentials, so they are
for whoever runs the relay. Output is JSON, one document per line.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import redis.asyncio as aioredis

from workers import event_queries as queries
from workers import keys
from workers.instances import Instance
from workers.settings import Settings


def _print(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document).decode() + "\n")


async def _instance(connection: aioredis.Redis, instance_id: int) -> Instance | None:
    record = await connection.get(keys.instance(instance_id))
    return Instance.loads(record) if record is not None else None


def events(settings: Settings, instance_id: int, event: str | None, status: str | None, limit: int) -> int:
    """Print one notification's whole story, or the newest `limit` matching `status`. Exit 1 if none."""

    async def run() -> int:
        connection = aioredis.Redis.from_url(settings.require_redis_url())
        try:
            instance = await _instance(connection, instance_id)
            if instance is None:
                print(f"ecwid-relay: no instance {instance_id}", file=sys.stderr)
                return 1
            if event is not None:
                found = await queries.one(
                    connection, instance_id, queries.resolve(instance_id, instance.store_id, event)
                )
                if found is None:
                    print(f"ecwid-relay: no event {event!r} in instance {instance_id}'s log", file=sys.stderr)
                    return 1
                _print(found)
                return 0
            page, _ = await queries.page(connection, instance_id, queries.parse_filter(status, None, None), limit)
            for item in page:
                _print(item)
            return 0
        finally:
            await connection.aclose()

    return _guarded(run)


def replay(settings: Settings, instance_id: int, event: str | None, status: str | None, limit: int) -> int:
    """Queue a replay of one notification, or of up to `limit` finished ones matching `status`."""

    async def run() -> int:
        connection = aioredis.Redis.from_url(settings.require_redis_url())
        try:
            instance = await _instance(connection, instance_id)
            if instance is None:
                print(f"ecwid-relay: no instance {instance_id}", file=sys.stderr)
                return 1
            if event is not None:
                notification = queries.resolve(instance_id, instance.store_id, event)
                found = [await queries.one(connection, instance_id, notification)]
            else:
                wanted = queries.parse_filter(status or "FAILED", None, None)
                found = list((await queries.page(connection, instance_id, wanted, limit))[0])
            ids = [str(f["id"]) for f in found if f is not None and f["status"] in queries.REPLAYABLE]
            queued = await queries.request_replay(connection, instance_id, instance.store_id, ids)
            _print({"instanceId": instance_id, "queued": queued, "ids": ids})
            return 0 if queued else 1
        finally:
            await connection.aclose()

    return _guarded(run)


def _guarded(run: Any) -> int:
    try:
        return int(asyncio.run(run()))
    except queries.QueryError as exc:
        print(f"ecwid-relay: {exc}", file=sys.stderr)
        return 2
