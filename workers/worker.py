"""`ecwid-relay worker`: one process that delivers events and runs polling rounds.

It runs three things over one Redis:

* an RQ `SimpleWorker` in the main thread, executing jobs in-process so that one
  keep-alive `httpx.Client` serves every job (no fork per job). It works two
  queues: deliveries first, then polling rounds (workers/polling.py);
* the dispatcher thread (workers/dispatcher.py), feeding RQ from the inbox;
* RQ's scheduler, in a thread, so that delayed retries are enqueued when due.
  Every worker runs one; RQ's lock makes exactly one of them active per queue.

SIGTERM or SIGINT is a warm shutdown: the job in progress finishes, then the
threads stop. A second signal is a cold shutdown (RQ's rule).

A worker that dies mid-job (kill -9, OOM, a lost machine) stops heartbeating its
job; within ABANDONED_AFTER + MAINTENANCE_INTERVAL seconds another worker's
maintenance pass finds the job abandoned and, for a delivery, queues it again
with the same Elements-Webhook-Id (workers/abandoned.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any

import redis
import structlog
from rq import Queue, SimpleWorker
from rq.exceptions import DequeueTimeout
from rq.executions import Execution
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from workers import context, heap, keys, logs, metrics
from workers.abandoned import another_attempt, retry_abandoned
from workers.delivery import DeliveryFailed
from workers.dispatcher import Dispatcher
from workers.ecwid_api import api_client
from workers.settings import Settings
from workers.transport import callback_client

log = structlog.get_logger(logger_name="workers.worker")

# How often some worker looks for abandoned jobs (RQ's default is 10 minutes).
MAINTENANCE_INTERVAL = 3
# A running job's heartbeat is renewed every HEARTBEAT_INTERVAL seconds by a thread; a job
# not renewed for ABANDONED_AFTER seconds belongs to a dead worker. RQ's SimpleWorker
# sends no heartbeat while a job runs, so it has to wait out the job's timeout + 60 s.
HEARTBEAT_INTERVAL = 2.0
ABANDONED_AFTER = 10
# RQ blocks an idle worker in BLPOP for worker_ttl - 15 s (405 s by default), and runs
# maintenance only between those waits: keep the wait short so that idle workers find
# abandoned jobs too.
WORKER_TTL = 20
# How often a worker's scheduler thread tries to take over the lock of one that died.
SCHEDULER_REACQUIRE_SECONDS = 10


class _ThreadedScheduler(RQScheduler):
    """RQ's scheduler loop, run in a thread instead of a forked process.

    Forking a process that already runs the dispatcher thread could copy a held
    lock into the child; a thread avoids that. Signals belong to the main thread.
    """

    def _install_signal_handlers(self) -> None:
        pass

    @property
    def should_reacquire_locks(self) -> bool:
        # RQ tries again for the lock of a scheduler that died only every 120 s (the lock itself
        # lapses after 61 s): retries due meanwhile would wait minutes for a worker kill -9'd.
        if self._queue_names == self.acquired_locks:
            return False
        if not self.lock_acquisition_time:
            return True
        return bool((datetime.now() - self.lock_acquisition_time).total_seconds() > SCHEDULER_REACQUIRE_SECONDS)


class RelayWorker(SimpleWorker):
    """A SimpleWorker that starts each job with a clean structlog context and counts
    what each job did (workers/metrics.py): it sees the return value or the exception."""

    _job_error: BaseException | None = None

    stopping = False  # SIGTERM or SIGINT came: leave for good (see `_work`)

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stopping = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def execute_job(self, job: Job, queue: Queue) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(role="worker", job_id=job.id)
        super().execute_job(job, queue)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return ABANDONED_AFTER

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        # Every job came through an intermediate list (ReliableQueue), whatever the queue count.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("exc_string") == STUCK_IN_INTERMEDIATE:
            # Taken from the queue by a worker that died before starting it: not a failure.
            another_attempt(job)
        super().handle_job_failure(job, queue, *args, **kwargs)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """Run the job while a thread keeps its heartbeat fresh, so that only a dead
        worker's job ever looks abandoned, and it looks so within seconds."""
        self._job_error = None
        started = time.perf_counter()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeats, args=(job, execution, done), name="job-heartbeat", daemon=True)
        beat.start()
        try:
            return bool(super().perform_job(job, queue, execution))
        finally:
            done.set()
            beat.join(5)
            # RQ keeps the return value on the job (`_result`) once the job returned.
            result = getattr(job, "_result", None) if self._job_error is None else None
            metrics.observe_job(job.func_name, result, self._job_error, time.perf_counter() - started)

    def _heartbeats(self, job: Job, execution: Execution, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_INTERVAL):
            try:
                self.maintain_heartbeats(job, execution)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("worker.heartbeat_failed", error=str(exc))

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        self._job_error = exc_info[1]
        # A failed attempt is already logged by the job, in one line; RQ would add a traceback.
        if isinstance(exc_info[1], DeliveryFailed):
            return
        super().handle_exception(job, *exc_info)


class ReliableQueue(Queue):
    """RQ's Queue, but a worker on several queues dequeues with LMOVE, never LPOP.

    RQ moves a job id into the queue's intermediate list (where maintenance finds it if
    the worker dies) only for a worker on one queue; with two it uses BLPOP, and a job
    popped by a worker that dies, or by a Redis that crashes before its reply arrives,
    is in no list at all: an acknowledged event lost. Blocking waits watch the first
    (delivery) queue; the others are looked at every BLOCK_SECONDS.
    """

    BLOCK_SECONDS = 1.0

    def acquire_maintenance_lock(self) -> bool:
        # RQ holds it for 899 s: a worker killed mid-maintenance would stop every other worker
        # from finding abandoned jobs for 15 minutes. A pass takes milliseconds.
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=2 * MAINTENANCE_INTERVAL))

    @classmethod
    def lpop(cls, queue_keys: Any, timeout: int | None, connection: redis.Redis | None = None) -> Any:
        assert connection is not None
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            for key in queue_keys:
                found = cls.lmove(connection, key, None)
                if found is not None:
                    return found
            if end is None:
                return None
            remaining = end - time.monotonic()
            if remaining <= 0:
                raise DequeueTimeout(timeout, queue_keys)
            try:
                return cls.lmove(connection, queue_keys[0], min(cls.BLOCK_SECONDS, remaining))  # type: ignore[arg-type]
            except DequeueTimeout:
                continue


STUCK_IN_INTERMEDIATE = "Job was stuck in intermediate queue."


def connect(url: str, **options: Any) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=10, **options)


def build_context(settings: Settings) -> context.WorkerContext:
    """The clients jobs share in this process (see workers/context.py)."""
    return context.WorkerContext(
        settings=settings,
        redis=connect(settings.require_redis_url(), socket_timeout=5),
        client=callback_client(settings.callback_allow_nets),
        ecwid=api_client(),
    )


def run(
    settings: Settings, *, burst: bool = False, name: str | None = None, metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
) -> int:  # fmt: skip
    """Run a worker until it is told to stop (or, with `burst`, until the queue is empty).

    With `metrics_port`, serve this process's Prometheus metrics there (workers/metrics.py)."""
    logs.configure(settings.log_level, role="worker")
    if metrics_port is not None:
        metrics.serve(metrics_port, metrics_host)
    url = settings.require_redis_url()
    name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctx = build_context(settings)
    context.install(ctx)

    rq_connection = connect(url)
    # Deliveries first: a worker takes a polling round only when no delivery is waiting.
    queues = [ReliableQueue(name, connection=rq_connection, serializer=JSONSerializer) for name in keys.QUEUES]
    worker = RelayWorker(
        queues, connection=rq_connection, serializer=JSONSerializer, name=name,
        maintenance_interval=MAINTENANCE_INTERVAL, worker_ttl=WORKER_TTL, queue_class=ReliableQueue,
        exception_handlers=[retry_abandoned],
    )  # fmt: skip

    stop = threading.Event()
    dispatcher = Dispatcher(
        connect(url, socket_timeout=10),
        Queue(keys.DELIVERY_QUEUE, connection=connect(url, socket_timeout=10), serializer=JSONSerializer),
        name,
        settings.event_retention,
    )
    scheduler = _ThreadedScheduler(queues, connection=connect(url, socket_timeout=10), serializer=JSONSerializer)
    threads = [
        threading.Thread(target=dispatcher.run, args=(stop,), name="dispatcher", daemon=True),
        threading.Thread(target=_run_scheduler, args=(scheduler, stop), name="rq-scheduler", daemon=True),
    ]
    if burst:
        # Burst mode (tests, one-off drains): dispatch what is in the inbox, then work it off.
        dispatcher.heartbeat(force=True)  # registered, so its items are recoverable if this fails
        while dispatcher.step(block=0.01):
            pass
        dispatcher.release()
        threads = []
    for thread in threads:
        thread.start()
    frozen = heap.settle()  # what start-up made lives as long as the process (workers/heap.py)
    log.info("worker.started", name=name, queue=keys.DELIVERY_QUEUE, metrics_port=metrics_port, frozen_objects=frozen)
    try:
        _work(worker, settings.log_level.upper(), burst)
    finally:
        stop.set()
        scheduler.request_stop()  # type: ignore[no-untyped-call]
        for thread in threads:
            thread.join(timeout=15)
        ctx.client.close()
        ctx.ecwid.close()
        log.info("worker.stopped", name=name)
    return 0


def _work(worker: RelayWorker, level: str, burst: bool) -> None:
    """RQ's work loop, entered again whenever it gives up, until the worker is told to stop.

    RQ leaves its loop ("quitting") when Redis fails under a running job, expecting a
    supervisor to start a new process. A relay worker rides out the outage instead: it
    waits for Redis, clears the registration it could not close, and works again.
    """
    while True:
        try:
            worker.work(burst=burst, with_scheduler=False, logging_level=level)
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # RQ's teardown could not reach Redis
            log.warning("worker.redis_unavailable", error=str(exc))
        if burst or worker.stopping:
            return
        delay = 0.5
        while not worker.stopping:
            try:
                worker.connection.delete(worker.key)  # else RQ refuses to register this name again
                break
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.warning("worker.resuming", name=worker.name)


def _run_scheduler(scheduler: _ThreadedScheduler, stop: threading.Event) -> None:
    """Keep RQ's scheduler loop alive across Redis outages until the worker stops."""
    while not stop.is_set():
        try:
            scheduler.work()  # type: ignore[no-untyped-call]
        except Exception as exc:
            log.warning("scheduler.restarting", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
