"""`ecwid-relay scheduler`: RQ's cron scheduler, enqueueing the polling planner.

Every `tick` seconds it enqueues `workers.polling.plan` on the polling queue; a
worker runs it, and it enqueues one round per due instance. Running two
schedulers by mistake is harmless: `plan` claims each due instance atomically,
and a round takes a per-instance lock (workers/polling.py).
"""

from __future__ import annotations

from typing import Any

import structlog
from redis import Redis
from rq import Queue
from rq.cron import CronJob, CronScheduler
from rq.job import Job
from rq.serializers import JSONSerializer

from workers import keys, logs, polling
from workers.poll_store import PollStore
from workers.settings import Settings

log = structlog.get_logger(logger_name="workers.scheduler")

DEFAULT_TICK = 30  # seconds; the finest polling interval is one minute


class JsonCronJob(CronJob):
    """RQ's CronJob enqueues with the pickle serializer; our workers read JSON only."""

    def enqueue(self, connection: Redis) -> Job:
        assert self.func is not None  # built from a function below, not restored from Redis
        queue = Queue(self.queue_name, connection=connection, serializer=JSONSerializer)
        return queue.enqueue(self.func, args=self.args, kwargs=self.kwargs, **self.job_options)


def cron(connection: Redis, tick: int) -> CronScheduler:
    scheduler = CronScheduler(connection=connection)
    job: Any = JsonCronJob(
        keys.POLL_QUEUE,
        func=polling.plan,
        interval=tick,
        job_timeout=60,
        result_ttl=0,
        ttl=max(60, 3 * tick),  # a plan nobody ran in time is stale: the next one replaces it
        failure_ttl=24 * 3600,
    )
    scheduler.get_jobs().append(job)  # CronScheduler.register would build a pickling CronJob
    return scheduler


def run(settings: Settings, *, tick: int = DEFAULT_TICK) -> int:
    """Run until SIGTERM or SIGINT (RQ's CronScheduler handles both)."""
    logs.configure(settings.log_level, role="scheduler")
    connection = Redis.from_url(settings.require_redis_url(), health_check_interval=10)
    added = PollStore(connection).reconcile()
    log.info("scheduler.started", tick=tick, queue=keys.POLL_QUEUE, newly_scheduled=added)
    cron(connection, tick).start()  # type: ignore[no-untyped-call]
    log.info("scheduler.stopped")
    return 0
