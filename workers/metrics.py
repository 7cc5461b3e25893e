"""Worker-side Prometheus metrics: deliveries, retries, latency, polling rounds.

Each worker process counts what its own jobs did and serves the counts on its own
port (`ecwid-relay worker --metrics-port 9100`), which Prometheus scrapes like any
other target. We chose a port per process over prometheus-client's multiprocess
mode: workers are separate processes (often separate pods) anyway, so there is no
shared directory to keep, clean at restart and aggregate; Prometheus sums the
targets. Queue depths are not counted here: the receiver reads them from Redis
when it is scraped (receiver/metrics.py), so they exist once, not once per worker.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server
from rq import Retry

from workers.delivery import DeliveryFailed

DELIVER = "workers.delivery.deliver"
POLL = "workers.polling.poll"

DELIVERIES = Counter(
    "relay_deliveries",
    "Delivery jobs that ended: delivered (2xx), skipped (instance gone, off or moved), paused (held in the "
    "instance's buffer while its deliveries are paused), failed (permanently or retries spent), "
    "error (the job crashed; RQ keeps it in the failed registry).",
    ["outcome"],
)
RETRIES = Counter("relay_delivery_retries", "Delivery attempts that failed and were scheduled to run again.")
DELIVERY_SECONDS = Histogram(
    "relay_delivery_duration_seconds",
    "Time one delivery attempt took, from job start to its outcome, callback included.",
    ["outcome"],
    # Callbacks answer in milliseconds when healthy; the transport's deadline is 10 s.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
POLL_ROUNDS = Counter(
    "relay_poll_rounds", "Polling rounds by result: ok, failed, disabled, skipped, or error (crashed).", ["result"]
)
POLL_ERRORS = Counter("relay_poll_errors", "Polling rounds that failed: Ecwid refused or failed, or the round crashed.")

for _outcome in ("delivered", "skipped", "paused", "failed", "error"):
    DELIVERIES.labels(outcome=_outcome)
for _result in ("ok", "failed", "disabled", "skipped", "error"):
    POLL_ROUNDS.labels(result=_result)


def delivery_outcome(result: object, error: BaseException | None) -> str:
    """What a delivery job's return value or exception means. Pure."""
    if error is not None:
        return "failed" if isinstance(error, DeliveryFailed) else "error"
    if isinstance(result, Retry):
        return "retry"
    return str(result) if result in ("delivered", "paused") else "skipped"


def observe_job(func_name: str | None, result: object, error: BaseException | None, seconds: float) -> None:
    """Count one finished job of ours; other jobs (planning, posted results) are not counted."""
    if func_name == DELIVER:
        outcome = delivery_outcome(result, error)
        DELIVERY_SECONDS.labels(outcome=outcome).observe(seconds)
        if outcome == "retry":
            RETRIES.inc()
        else:
            DELIVERIES.labels(outcome=outcome).inc()
    elif func_name == POLL:
        found = result.get("outcome") if isinstance(result, dict) else None
        outcome = "error" if error is not None else str(found or "error")
        POLL_ROUNDS.labels(result=outcome).inc()
        if outcome in ("failed", "disabled", "error"):
            POLL_ERRORS.inc()


def observe_batch(statuses: list[str], delivered_seconds: list[float]) -> None:
    """Count what a runner decided (workers/batches.py): its events' event-log statuses, and the
    time of each successful attempt. Events it handed to jobs of their own are counted by those."""
    for status in statuses:
        DELIVERIES.labels(outcome=_BATCH_OUTCOMES[status]).inc()
    for seconds in delivered_seconds:
        DELIVERY_SECONDS.labels(outcome="delivered").observe(seconds)


_BATCH_OUTCOMES = {"NOTIFIED": "delivered", "SKIPPED": "skipped", "PAUSED": "paused"}


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Serve this process's metrics at http://host:port/metrics, from a daemon thread."""
    start_http_server(port, addr=host)
