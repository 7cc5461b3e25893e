"""Jobs whose worker died mid-run: queued again at once, failed for good after ABANDON_LIMIT deaths.

RQ finds a job abandoned when its worker stops heartbeating it (workers/worker.py sets how
soon) and hands it to the queue's exception handlers. `retry_abandoned` is ours: without
it, a delivery that had spent its retries, or was queued without a policy, would sit in
the failed registry, never delivered. The callback may get it twice, with the same id.
"""

from __future__ import annotations

from typing import Any

import structlog
from rq.exceptions import AbandonedJobError
from rq.job import Job

from workers import keys
from workers.delivery import release_url

log = structlog.get_logger(logger_name="workers.worker")

# A delivery that takes its worker down this many times is failed, not retried forever.
ABANDON_LIMIT = 5


def retry_abandoned(job: Job, exc_type: type[BaseException], *_: Any) -> bool:
    """RQ exception handler: a delivery whose worker died mid-attempt is queued again.

    RQ retries an abandoned job only while it has retries left; one that spent them (or
    a job queued without a policy) would sit in the failed registry, never delivered.
    The callback may get it twice, with the same id.
    """
    if exc_type is AbandonedJobError:
        another_attempt(job)
    return True


def another_attempt(job: Job) -> None:
    """Make RQ requeue `job` at once, ahead of the queue, instead of failing it (deliveries only).

    The delivery already waited out the abandonment detection; its retry does not also wait
    for its schedule's next step, nor for RQ's scheduler (whose lock a killed worker may hold
    for a minute). The rest of the schedule stays for later failures.
    """
    if job.origin != keys.DELIVERY_QUEUE:
        return
    # RQ keeps a dead execution listed 60 s longer than its record lives; finishing the
    # retried job in that window would raise "Execution not found" and count as a failure.
    job.connection.delete(job.execution_registry.key)
    job.enqueue_at_front_on_retry = True
    if job.retries_left:
        intervals = list(job.retry_intervals or [])
        step = max(len(intervals) - job.retries_left, 0)  # the step RQ's Job.retry takes next
        if step < len(intervals):
            intervals[step] = 0
            job.retry_intervals = intervals
        return
    abandoned = int(job.meta.get("abandoned", 0)) + 1
    job.meta["abandoned"] = abandoned
    if abandoned > ABANDON_LIMIT:
        log.error("delivery.abandoned_failed", job_id=job.id, times=abandoned)
        _release_url(job)
        return
    job.retries_left = 1
    job.retry_intervals = None
    log.warning("delivery.abandoned_requeued", job_id=job.id, times=abandoned)


def _release_url(job: Job) -> None:
    """A delivery job that will not run again no longer holds back its callback URL's runners, if
    it was deciding a failure a batch handed it (workers/pending.py, `awaiting`): it is decided,
    as failed."""
    args = job.args
    if job.func_name == "workers.delivery.deliver" and len(args) >= 5 and args[4]:
        release_url(job.connection, str(args[4]), int(args[1]), job.id)
