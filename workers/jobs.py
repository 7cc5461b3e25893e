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
    *, drained: bool = False, failure: dict[str, Any] | None = None, decides_for: str | None = None,
) -> Job:  # fmt: skip
    """A job delivering `item` (serialised as `text`) to `instance_id`, limited per callback URL.
    `failure`: a batch's failed first attempt, for this job to decide on (workers/batches.py).
    `decides_for`: the callback URL (its limit key) whose runners wait for this job to decide."""
    args: tuple[Any, ...] = (text, instance_id)
    if drained or failure or decides_for:
        args += (drained,)
    if failure or decides_for:
        args += (failure,)
    if decides_for:
        args += (decides_for,)
    return queue.create_job(
        "workers.delivery.deliver",
        args=args,
        job_id=job_id,
        description=f"deliver {item.event_type} {item.key} to instance {instance_id}",
        **_delivery_options(instance),
    )


def runner_job(queue: Queue, url: str, instance: Instance | None, job_id: str) -> Job:
    """A job delivering what is pending for callback URL `url` when it starts (workers/pending.py),
    limited per URL like a single delivery. Crash retries as for a single delivery: RQ runs it again
    after its worker died, and it delivers again what it had taken (at least once)."""
    return queue.create_job(
        "workers.batches.run_pending",
        args=(url,),
        job_id=job_id,
        description=f"deliver what is pending for {url}",
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


def carried_item(data: bytes) -> tuple[str, int] | None:
    """The (inbox item, instance id) a single delivery job carries, from the job's stored `data`
    field (zlib-compressed serialised call, as RQ's `Job.restore` reads it). The event log shows a
    queued delivery's payload from here: until its first decision, only the job holds it."""
    func, _, args, _ = orjson.loads(zlib.decompress(data))  # our queues use RQ's JSONSerializer
    return (args[0], int(args[1])) if func == "workers.delivery.deliver" and len(args) >= 2 else None
