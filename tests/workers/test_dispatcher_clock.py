"""Dispatchers judge each other dead by Redis's clock, never by their own host's."""

from __future__ import annotations

import time

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from workers import keys
from workers.dispatcher import ORPHAN_AFTER_SECONDS, Dispatcher


def test_heartbeats_use_the_redis_clock(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = Queue(keys.DELIVERY_QUEUE, connection=redis_client, serializer=JSONSerializer)
    alive = Dispatcher(redis_client, queue, "alive", 3600)
    alive.heartbeat(force=True)
    redis_client.lpush(keys.dispatching("alive"), b"in flight")
    # Another worker's host clock runs two minutes ahead: it must not take "alive" for dead.
    skewed = Dispatcher(redis_client, queue, "skewed", 3600)
    real_time = time.time
    with monkeypatch.context() as patched:
        patched.setattr(time, "time", lambda: real_time() + 2 * ORPHAN_AFTER_SECONDS)
        skewed.heartbeat(force=True)
    seconds, micros = redis_client.time()
    assert abs(float(redis_client.zscore(keys.DISPATCHERS, "skewed") or 0) - (seconds + micros / 1e6)) < 5
    assert redis_client.lrange(keys.dispatching("alive"), 0, -1) == [b"in flight"]
    assert redis_client.llen(keys.INBOX) == 0
