"""The accept batch (receiver/accept_batch.py), driven through receiver/ingest_store.py against
a real Redis: one script call for many concurrent events, each with its own reply."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from receiver import accept_batch
from receiver.errors import REFUSAL
from receiver.ingest_store import IngestStore, StoreRoute, Subscriber
from receiver.instance_store import InstanceStore
from workers.inbox import InboxItem
from workers.instances import Instance, user_id
from workers.redis_server import RedisServer

TTL = 3600


def item(event_id: str, store_id: int, instance_id: int) -> InboxItem:
    return InboxItem(
        kind="webhook", store_id=store_id, event_id=event_id, event_created=1700000000,
        event_type="order.updated", entity_id=1, data=None, instances=(instance_id,), received=1.0,
        raw=orjson.dumps({"eventId": event_id}).decode(),
    )  # fmt: skip


async def create(connection: aioredis.Redis, store_id: int) -> int:
    configuration = {
        "ecwid.store.id": str(store_id), "ecwid.order.key": "k", "ecwid.product.key": "k",
        "event.notification.enabled": "true", "event.notification.callback.url": "http://127.0.0.1:9/hook",
    }  # fmt: skip
    draft = Instance(id=0, owner=user_id("owner-secret-0123456789"), name=f"store {store_id}", token="",
                     auth="custom", store_id=store_id, configuration=configuration)  # fmt: skip
    return (await InstanceStore(connection).create(draft)).id


def script_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def queued(client: redis.Redis) -> list[str]:
    return [InboxItem.loads(raw).event_id for raw in reversed(client.lrange("relay:inbox", 0, -1))]


def test_concurrent_accepts_share_one_script_call_and_each_gets_its_own_reply(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async def scenario() -> list[Any]:
        connection = aioredis.Redis.from_url(redis_server.url)
        first, second = await create(connection, 11), await create(connection, 12)
        store = IngestStore(connection, TTL)
        one, two = await store.load(11), await store.load(12)  # the load is itself a (one-event) call
        redis_client.config_resetstat()
        stale = StoreRoute("0" * 40, ())
        outcomes = await asyncio.gather(
            store.accept_routed(11, one, item("e1", 11, first)),
            store.accept_routed(12, two, item("e2", 12, second)),
            store.accept_routed(11, one, item("e1", 11, first)),  # the same event, later in the same call
            store.accept_routed(11, stale, item("e3", 11, first)),  # routed on instances that changed
            store.accept_routed(12, two, None),  # a routing check only
        )
        await connection.aclose()
        return [*outcomes, one, first]

    *outcomes, one, first = asyncio.run(scenario())
    assert outcomes == [
        "queued",
        "queued",
        "duplicate",
        StoreRoute(one.fingerprint, (Subscriber(first, None, True),)),
        "fresh",
    ]
    assert script_calls(redis_client) == 1
    assert queued(redis_client) == ["e1", "e2"]
    assert redis_client.exists("relay:seen:e1", "relay:seen:e2", "relay:seen:e3") == 2


def test_a_large_batch_is_split_into_several_calls_sent_together(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    count = accept_batch.CALL_EVENTS + 44

    async def scenario() -> list[Any]:
        connection = aioredis.Redis.from_url(redis_server.url)
        instance = await create(connection, 21)
        store = IngestStore(connection, TTL)
        route = await store.load(21)
        redis_client.config_resetstat()
        outcomes = await asyncio.gather(
            *(store.accept_routed(21, route, item(f"b{n}", 21, instance)) for n in range(count))
        )
        await connection.aclose()
        return outcomes

    assert asyncio.run(scenario()) == ["queued"] * count
    assert script_calls(redis_client) == 2
    assert queued(redis_client) == [f"b{n}" for n in range(count)]


def test_calls_are_cut_by_event_count_and_by_bytes() -> None:
    def calls(sizes: list[int]) -> list[list[int]]:
        batch: list[accept_batch.Call] = [("i", "s", "f", b"x" * size, None) for size in sizes]  # type: ignore[arg-type]
        return [[len(call[3]) for call in group] for group in accept_batch.split(batch)]

    mib = 1024 * 1024
    assert calls([10] * (accept_batch.CALL_EVENTS + 1)) == [[10] * accept_batch.CALL_EVENTS, [10]]
    assert calls([mib, mib, 2 * mib, mib]) == [[mib, mib, 2 * mib], [mib]]
    # An item bigger than CALL_BYTES still goes, in a call of its own.
    assert calls([10, 5 * mib, 10]) == [[10], [5 * mib], [10]]


def test_a_refused_batch_writes_nothing_and_every_event_hears_it(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Out of memory: the call fails at its first write, so no event of it is marked seen or queued."""

    async def scenario() -> list[Any]:
        connection = aioredis.Redis.from_url(redis_server.url)
        instance = await create(connection, 31)
        store = IngestStore(connection, TTL)
        route = await store.load(31)
        limit = redis_client.config_get("maxmemory")["maxmemory"]
        redis_client.config_set("maxmemory", "1")
        try:
            calls = (store.accept_routed(31, route, item(f"r{n}", 31, instance)) for n in range(3))
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            redis_client.config_set("maxmemory", limit)
        await connection.aclose()
        return outcomes

    outcomes = asyncio.run(scenario())
    # Redis 6 wraps the refusal in a script error; the receiver answers it 503 (receiver/errors.py).
    assert [isinstance(outcome, redis.exceptions.ResponseError) for outcome in outcomes] == [True] * 3
    assert all(REFUSAL.search(str(outcome)) for outcome in outcomes), outcomes
    assert redis_client.llen("relay:inbox") == 0
    assert redis_client.keys("relay:seen:*") == []
