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
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Any

import redis
import structlog
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from workers import context, keys, logs, metrics
from workers.delivery import DeliveryFailed
from workers.dispatcher import Dispatcher
from workers.ecwid_api import api_client
from workers.settings import Settings
from workers.transport import callback_client

log = structlog.get_logger(logger_name="workers.worker")

# RQ's default is 10 minutes: a job whose worker was killed would wait that long.
MAINTENANCE_INTERVAL = 15


class _ThreadedScheduler(RQScheduler):
    """RQ's scheduler loop, run in a thread instead of a forked process.

    Forking a process that already runs the dispatcher thread could copy a held
    lock into the child; a thread avoids that. Signals belong to the main thread.
    """

    def _install_signal_handlers(self) -> None:
        pass


class RelayWorker(SimpleWorker):
    """A SimpleWorker that starts each job with a clean structlog context and counts
    what each job did (workers/metrics.py): it sees the return value or the exception."""

    _job_error: BaseException | None = None

    def execute_job(self, job: Job, queue: Queue) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(role="worker", job_id=job.id)
        super().execute_job(job, queue)

    def perform_job(self, job: Job, queue: Queue, execution: Any) -> bool:
        self._job_error = None
        started = time.perf_counter()
        try:
            return bool(super().perform_job(job, queue, execution))
        finally:
            # RQ keeps the return value on the job (`_result`) once the job returned.
            result = getattr(job, "_result", None) if self._job_error is None else None
            metrics.observe_job(job.func_name, result, self._job_error, time.perf_counter() - started)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        self._job_error = exc_info[1]
        # A failed attempt is already logged by the job, in one line; RQ would add a traceback.
        if isinstance(exc_info[1], DeliveryFailed):
            return
        super().handle_exception(job, *exc_info)


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
    queues = [Queue(name, connection=rq_connection, serializer=JSONSerializer) for name in keys.QUEUES]
    worker = RelayWorker(
        queues, connection=rq_connection, serializer=JSONSerializer, name=name,
        maintenance_interval=MAINTENANCE_INTERVAL,
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
    log.info("worker.started", name=name, queue=keys.DELIVERY_QUEUE, metrics_port=metrics_port)
    try:
        worker.work(burst=burst, with_scheduler=False, logging_level=settings.log_level.upper())
    finally:
        stop.set()
        scheduler.request_stop()  # type: ignore[no-untyped-call]
        for thread in threads:
            thread.join(timeout=15)
        ctx.client.close()
        ctx.ecwid.close()
        log.info("worker.stopped", name=name)
    return 0


def _run_scheduler(scheduler: _ThreadedScheduler, stop: threading.Event) -> None:
    """Keep RQ's scheduler loop alive across Redis outages until the worker stops."""
    while not stop.is_set():
        try:
            scheduler.work()  # type: ignore[no-untyped-call]
        except Exception as exc:
            log.warning("scheduler.restarting", error=f"{type(exc).__name__}: {exc}")
            stop.wait(1.0)
