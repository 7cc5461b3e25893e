"""RQ's locks that a killed worker can leave behind must lapse within seconds, not minutes."""

from __future__ import annotations

import redis
from rq.serializers import JSONSerializer

from workers import keys
from workers.worker import MAINTENANCE_INTERVAL, ReliableQueue


def test_the_maintenance_lock_lapses_soon_after_its_holder_dies(redis_client: redis.Redis) -> None:
    queue = ReliableQueue(keys.DELIVERY_QUEUE, connection=redis_client, serializer=JSONSerializer)
    assert queue.acquire_maintenance_lock()
    assert not queue.acquire_maintenance_lock()  # still one cleaner at a time
    # RQ's own lock lasts 899 s: a worker killed mid-maintenance stopped abandoned-job detection for 15 min.
    assert 0 < redis_client.ttl(queue.registry_cleaning_key) <= 3 * MAINTENANCE_INTERVAL
