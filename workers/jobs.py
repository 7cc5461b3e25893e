"""How delivery jobs are made: their ids, timeouts, and the per-endpoint concurrency limit.

Each delivery job carries RQ's `RateLimit` keyed by its callback URL: at most
`event.notification.concurrency` (default 4) deliveries to one URL are queued
or running at once. The rest wait in RQ's rate-limited set, outside the queue,
so a slow endpoint holds a few workers at most and every other instance's
deliveries go on. RQ releases a slot when a job ends, fails or is scheduled for
a retry, and frees the slots of jobs whose worker died. Probes (workers/drain.py)
are single requests outside the limit. Queued jobs keep the limit of the URL they
were queued for, and instances sharing a URL share one limit: the last one queued sets it.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from redis.client import Pipeline
from rq import Callback, Queue, Retry
from rq.job import Job
from rq.rate_limit import RateLimit

from workers import keys
from workers.failures import RETRY_SCHEDULE
from workers.inbox import InboxItem
from workers.instances import Instance

JOB_TIMEOUT = 60  # seconds; a delivery takes at most the transport's 10 s deadline plus building the body
FAILURE_TTL = 30 * 24 * 3600


def delivery_job(
    queue: Queue, item: InboxItem, text: str, instance_id: int, instance: Instance | None, job_id: str,
    *, drained: bool = False, failure: dict[str, Any] | None = None,
) -> Job:  # fmt: skip
    """A job delivering `item` (serialised as `text`) to `instance_id`, limited per callback URL.
    `failure`: a batch's failed first attempt, for this job to decide on (workers/batches.py)."""
    args: tuple[Any, ...] = (text, instance_id)
    if drained or failure:
        args += (drained,)
    if failure:
        args += (failure,)
    return queue.create_job(
        "workers.delivery.deliver",
        args=args,
        job_id=job_id,
        description=f"deliver {item.event_type} {item.key} to instance {instance_id}",
        **_delivery_options(instance),
    )


def batch_job(queue: Queue, deliveries: list[list[Any]], instance: Instance | None, job_id: str) -> Job:
    """A job delivering several [serialised item, instance id] in order (workers/batches.py), all
    to `instance`'s callback URL.

    Limited per callback URL like a single delivery: a batch sends one request at a time, so it
    holds one slot. Crash retries as for a single delivery; a retried batch sends again what it
    had sent (at least once; receivers deduplicate on Elements-Webhook-Id).
    """
    return queue.create_job(
        "workers.batches.deliver_batch",
        args=(deliveries,),
        job_id=job_id,
        description=f"deliver {len(deliveries)} events to {instance.id if instance else '?'} and others on its URL",
        **_delivery_options(instance),
    )


def _delivery_options(instance: Instance | None) -> dict[str, Any]:
    """What single and batch delivery jobs share: timeouts, the per-URL limit, crash retries."""
    url = instance.callback_url if instance is not None else None
    return {
        "timeout": JOB_TIMEOUT,
        "result_ttl": 0,
        "failure_ttl": FAILURE_TTL,
        "rate_limit": RateLimit(keys.endpoint_limit(url), instance.concurrency) if instance and url else None,
        # The job decides its own retries by returning `Retry` (workers/delivery.py); this policy is for
        # what it cannot decide: its worker died mid-delivery, or an unexpected error (a Redis blip).
        "retry": Retry(max=len(RETRY_SCHEDULE), interval=list(RETRY_SCHEDULE)),
        "on_failure": Callback("workers.delivery.on_failure"),
    }


def enqueue(queue: Queue, jobs: list[Job], pipe: Pipeline) -> None:
    """Add `jobs` to `pipe` (a MULTI the caller executes), through the rate limiter where they have one.

    This is what `Queue.enqueue_many` does, plus the rate limiter: RQ's public `enqueue_job`
    refuses a pipeline for rate-limited jobs only because a caller that saved the job again
    afterwards would overwrite its promoted status. We never do, and the jobs must be created in
    the same transaction that takes their items off the inbox or the buffer.
    """
    if not jobs:
        return
    pipe.sadd(queue.redis_queues_keys, queue.key)
    for job in jobs:
        job.origin = queue.name
        if job.has_rate_limit:
            queue._enqueue_rate_limited_job(job, pipeline=pipe)
        else:
            queue._enqueue_job(job, pipeline=pipe)


def carried_items(data: bytes) -> list[tuple[str, int]]:
    """The (inbox item, instance id) pairs a single or batch delivery job carries, from the job's
    stored `data` field (zlib-compressed serialised call, as RQ's `Job.restore` reads it). The event
    log shows a queued delivery's payload from here: until its first decision, only the job holds it."""
    func, _, args, _ = orjson.loads(zlib.decompress(data))  # our queues use RQ's JSONSerializer
    if func == "workers.batches.deliver_batch":
        return [(text, int(instance_id)) for text, instance_id in args[0]]
    if func == "workers.delivery.deliver":
        return [(args[0], int(args[1]))]
    return []
