"""The dispatcher's take from the inbox: a whole batch in two round trips, and no more moves than items."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from workers import dispatcher as dispatcher_module
from workers import keys, pending
from workers.dispatcher import BATCH, Dispatcher
from workers.inbox import InboxItem
from workers.instances import Instance


def item(n: int) -> bytes:
    raw = f'{{"eventId":"e-{n}","eventCreated":1700000000,"storeId":1003,"eventType":"order.updated"}}'
    return InboxItem(kind="webhook", store_id=1003, event_id=f"e-{n}", event_created=1700000000,
                     event_type="order.updated", entity_id=n, data=None, instances=(77,), received=1.0,
                     raw=raw).dumps()  # fmt: skip


def moves(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_lmove", "cmdstat_blmove"))


def dispatcher(client: redis.Redis) -> Dispatcher:
    queue = Queue(keys.DELIVERY_QUEUE, connection=client, serializer=JSONSerializer)
    return Dispatcher(client, queue, "test-dispatcher", retention=3600)


def test_a_lone_event_costs_two_moves_not_a_batch(redis_client: redis.Redis) -> None:
    redis_client.lpush(keys.INBOX, item(1))
    redis_client.config_resetstat()
    assert dispatcher(redis_client).step(block=0.1) == 1
    assert moves(redis_client) == 2  # the blocking move, and the one that found the inbox empty
    assert redis_client.llen(keys.INBOX) == 0
    assert redis_client.llen(keys.dispatching("test-dispatcher")) == 0
    assert redis_client.lrange(f"rq:queue:{keys.DELIVERY_QUEUE}", 0, -1) != []  # the job is queued


def test_a_step_takes_at_most_a_batch_oldest_first(redis_client: redis.Redis) -> None:
    for n in range(BATCH + 5):
        redis_client.lpush(keys.INBOX, item(n))
    redis_client.config_resetstat()
    taken = dispatcher(redis_client)
    assert taken.step(block=0.1) == BATCH
    assert moves(redis_client) == BATCH
    assert redis_client.zcard("relay:instance:77:deliveries") == BATCH  # every record indexed
    assert int(redis_client.info("commandstats")["cmdstat_zadd"]["calls"]) == 1  # in one call for the instance
    left = [InboxItem.loads(raw).event_id for raw in redis_client.lrange(keys.INBOX, 0, -1)]
    assert sorted(left) == sorted(f"e-{n}" for n in range(BATCH, BATCH + 5))
    assert taken.step(block=0.1) == 5
    assert redis_client.llen(keys.INBOX) == 0


def test_instances_are_read_once_a_second_for_grouping_by_url(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher groups by the callback URL it read at most INSTANCE_CACHE_SECONDS ago (runners
    read the instance again before sending); a change reaches the grouping once that has passed."""

    def store(url: str) -> None:
        instance = Instance(id=77, owner="o", name="n", token="", auth="custom", store_id=1003,
                            configuration={"event.notification.enabled": "true",
                                           "event.notification.callback.url": url})  # fmt: skip
        redis_client.set(keys.instance(77), instance.dumps())

    def pending_of(url: str) -> list[str]:
        raw = redis_client.lrange(pending.pending(keys.endpoint_limit(url)), 0, -1)
        return [InboxItem.loads(pending.parse(entry)[0]).event_id for entry in raw]

    monkeypatch.setattr(dispatcher_module, "INSTANCE_CACHE_SECONDS", 0.3)
    store("http://127.0.0.1:9/a")
    taken = dispatcher(redis_client)
    redis_client.config_resetstat()
    redis_client.lpush(keys.INBOX, item(1))
    assert taken.step(block=0.1) == 1
    store("http://127.0.0.1:9/b")
    redis_client.lpush(keys.INBOX, item(2))
    assert taken.step(block=0.1) == 1
    assert int(redis_client.info("commandstats")["cmdstat_mget"]["calls"]) == 3  # the instance once, runner keys twice
    time.sleep(0.35)
    redis_client.lpush(keys.INBOX, item(3))
    assert taken.step(block=0.1) == 1
    assert pending_of("http://127.0.0.1:9/a") == ["e-1", "e-2"]
    assert pending_of("http://127.0.0.1:9/b") == ["e-3"]
