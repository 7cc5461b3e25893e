"""`ecwid-relay instances`, `failed` and `redis`: the operator's view, straight from Redis.

Like `events` and `replay` (workers/event_cli.py) they need RELAY_REDIS_URL and no
API credentials, so they are for whoever runs the relay, and print JSON, one
document per line. Instance views are the API's own (`Instance.public()` and the
poller's `polling` block); the failed registry is RQ's.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from receiver.instance_store import InstanceStore
from receiver.instances_api import delivery_view, polling_view
from workers import keys, queue_stats, redis_check
from workers.delivery import safe_url
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.settings import Settings

CHUNK = 500


def _print(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document).decode() + "\n")


def _summary(instance: Instance, delivery: dict[str, str]) -> dict[str, Any]:
    callback = instance.callback_url
    return {
        "id": instance.id, "name": instance.name, "storeId": instance.store_id, "user": instance.owner,
        "auth": instance.auth, "disabled": instance.disabled, "eventsEnabled": instance.events_enabled,
        "vendor": instance.vendor, "callback": safe_url(callback) if callback else None,
        "delivery": delivery.get("state") or "active",
    }  # fmt: skip


async def _view(store: InstanceStore, instance: Instance) -> dict[str, Any]:
    """The view GET /instances/{id} returns (receiver/instances_api.py), for any owner."""
    view = instance.public()
    view["delivery"] = delivery_view(instance, (await store.delivery_states([instance])).get(instance.id, {}))
    if instance.vendor == "polling":
        view["polling"] = polling_view(instance, (await store.polling_states([instance])).get(instance.id, {}))
    return view


async def _all_instances(connection: aioredis.Redis, store_id: int | None) -> list[Instance]:
    if store_id is not None:
        ids = sorted(int(raw) for raw in await connection.smembers(keys.store_instances(store_id)))
    else:
        # Ids are handed out in sequence; walking them is cheaper than SCAN over every key.
        ids = list(range(1, int(await connection.get(keys.INSTANCE_SEQUENCE) or 0) + 1))
    found: list[Instance] = []
    for start in range(0, len(ids), CHUNK):
        records = await connection.mget([keys.instance(i) for i in ids[start : start + CHUNK]])
        found.extend(Instance.loads(record) for record in records if record is not None)
    return found


def instances(settings: Settings, action: str, instance_id: int | None, store_id: int | None) -> int:
    """`list`: one summary line per instance (of a store). `show`: the API's view of one. `pause`
    and `resume`: as the owner's PATCH {"delivery": {"paused": ...}}, then show. Exit 1 if none."""

    async def run() -> int:
        connection = aioredis.Redis.from_url(settings.require_redis_url())
        try:
            store = InstanceStore(connection)
            if action == "list":
                found = await _all_instances(connection, store_id)
                states = await store.delivery_states(found)
                for instance in found:
                    _print(_summary(instance, states.get(instance.id, {})))
                return 0
            record = await connection.get(keys.instance(instance_id or 0))
            if record is None:
                print(f"ecwid-relay: no instance {instance_id}", file=sys.stderr)
                return 1
            instance = Instance.loads(record)
            if action == "pause":
                await store.pause(instance.id, "paused by an operator (ecwid-relay instances pause)")
            elif action == "resume":
                await store.resume(instance.id)
            _print(await _view(store, instance))
            return 0
        finally:
            await connection.aclose()

    return asyncio.run(run())


def _failed_entry(job: Job) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": job.id, "queue": job.origin, "function": job.func_name}
    if job.func_name == "workers.delivery.deliver" and len(job.args) >= 2:
        item = InboxItem.loads(job.args[0])
        entry.update(instanceId=job.args[1], eventId=item.event_id, storeId=item.store_id, kind=item.kind)
    else:
        entry["args"] = list(job.args)
    result = job.latest_result()
    reason = (result.exc_string or "").strip().splitlines() if result is not None else []
    entry["failedAt"] = job.ended_at.isoformat() if job.ended_at else None
    entry["reason"] = reason[-1] if reason else None
    return entry


def failed(settings: Settings, action: str, job_ids: list[str], every: bool, queue_name: str, limit: int) -> int:
    """`list`: the newest `limit` failed jobs. `requeue`: queue the named jobs (or all) again.

    A requeued delivery gets one more attempt: its retries are spent, so if that fails too
    it returns here. To send an event again with a fresh schedule, use `replay`."""
    connection = redis.Redis.from_url(settings.require_redis_url())
    queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
    registry = FailedJobRegistry(queue=queue)
    if action == "list":
        ids = registry.get_job_ids(0, limit - 1, desc=True)
        for job in Job.fetch_many(ids, connection=connection, serializer=JSONSerializer):
            if job is not None:
                _print(_failed_entry(job))
        return 0
    if every:
        job_ids = registry.get_job_ids()
    elif not job_ids:
        print("ecwid-relay: name the jobs to requeue, or pass --all", file=sys.stderr)
        return 2
    requeued, missing = [], []
    for job_id in job_ids:
        try:
            registry.requeue(job_id)
            requeued.append(job_id)
        except Exception:  # rq raises InvalidJobOperation or NoSuchJobError; both mean "not in the registry"
            missing.append(job_id)
    _print({"queue": queue_name, "requeued": requeued, "notFailed": missing})
    return 0 if not missing else 1


def redis_status(settings: Settings) -> int:
    """Print whether Redis is fit for the relay and how much work waits. Exit 1 on any problem,
    2 when Redis cannot be reached."""

    async def run() -> int:
        connection = aioredis.Redis.from_url(settings.require_redis_url(), socket_connect_timeout=3, socket_timeout=5)
        try:
            report = await redis_check.inspect(connection)
            stats = await queue_stats.read(connection)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            print(f"ecwid-relay: Redis is unreachable: {type(exc).__name__}", file=sys.stderr)
            return 2
        finally:
            await connection.aclose()
        _print({**report.as_dict(), "queues": stats.as_dict()})
        return 1 if report.problems else 0

    return asyncio.run(run())
