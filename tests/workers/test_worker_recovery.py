"""What a killed worker leaves behind: RQ's locks must lapse within seconds, not minutes; a job that
kept killing workers must not hold back its callback URL."""

from __future__ import annotations

import time

import redis
from rq import Queue
from rq.exceptions import AbandonedJobError
from rq.serializers import JSONSerializer

from workers import abandoned, jobs, keys, pending
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.worker import MAINTENANCE_INTERVAL, ReliableQueue


def test_the_maintenance_lock_lapses_soon_after_its_holder_dies(redis_client: redis.Redis) -> None:
    queue = ReliableQueue(keys.DELIVERY_QUEUE, connection=redis_client, serializer=JSONSerializer)
    assert queue.acquire_maintenance_lock()
    assert not queue.acquire_maintenance_lock()  # still one cleaner at a time
    # RQ's own lock lasts 899 s: a worker killed mid-maintenance stopped abandoned-job detection for 15 min.
    assert 0 < redis_client.ttl(queue.registry_cleaning_key) <= 3 * MAINTENANCE_INTERVAL


def test_a_deciding_job_abandoned_for_good_releases_its_url(redis_client: redis.Redis) -> None:
    """A job deciding a batch's failure (workers/pending.py, `awaiting`) whose runs killed their worker
    more than ABANDON_LIMIT times is failed for good: the URL's runners, held for its decision, go on
    at once rather than after the undecided set's TTL (ten minutes)."""
    url = "endpoint:0123456789abcdef01234567"
    config = {"event.notification.callback.url": "http://127.0.0.1:9/h"}
    redis_client.set(keys.instance(1), Instance(1, "owner", "n", "t", "custom", 1003, config).dumps())
    queue = Queue(keys.DELIVERY_QUEUE, connection=redis_client, serializer=JSONSerializer)
    item = InboxItem("webhook", 1003, "evt-1", 1_700_000_000, "order.created", 42, None, (1,), time.time(), "{}")
    job = jobs.delivery_job(queue, item, item.dumps().decode(), 1, None, "dlv-killer", decides_for=url)
    job.save()
    redis_client.rpush(pending.pending(url), pending.entry("after the failure", 1))
    with redis_client.pipeline(transaction=True) as pipe:
        pending.awaiting(pipe, url, [job.id])
        pipe.execute()
    assert pending.take(redis_client, url, pending.runner_job_id(url), 200, 1.0).held
    job.meta["abandoned"] = abandoned.ABANDON_LIMIT
    job.retries_left = 0

    assert abandoned.retry_abandoned(job, AbandonedJobError) is True

    assert job.retries_left == 0  # failed for good: RQ files it in its failed registry
    assert redis_client.exists(pending.undecided(url)) == 0
    [runner] = [raw.decode() for raw in redis_client.lrange(queue.key, 0, -1) if raw.startswith(b"run-")]
    assert redis_client.get(pending.runner(url)) == runner.encode()


def test_an_ordinary_delivery_abandoned_for_good_touches_no_url(redis_client: redis.Redis) -> None:
    queue = Queue(keys.DELIVERY_QUEUE, connection=redis_client, serializer=JSONSerializer)
    item = InboxItem("webhook", 1003, "evt-2", 1_700_000_000, "order.created", 42, None, (1,), time.time(), "{}")
    job = jobs.delivery_job(queue, item, item.dumps().decode(), 1, None, "dlv-plain")
    job.save()
    job.meta["abandoned"] = abandoned.ABANDON_LIMIT
    job.retries_left = 0
    assert abandoned.retry_abandoned(job, AbandonedJobError) is True
    assert redis_client.keys("relay:url:*") == [] and redis_client.llen(queue.key) == 0
