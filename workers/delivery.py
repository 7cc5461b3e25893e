"""The delivery job: POST one event to one instance's callback URL, and log what happened.

Each attempt is written to the event log (workers/delivery_log.py). What a
failure means is decided in workers/failures.py: a retryable one returns RQ's
`Retry` with the delay to wait (the Cloud Elements schedule, 4^n seconds and 9
retries, or the receiver's `Retry-After`), so RQ's scheduler runs it again; a
permanent one, or the last, raises `DeliveryFailed` and the job waits in RQ's
failed registry while the event log says FAILED and why.

Failed attempts in a row are counted per instance; past the instance's
`event.notification.pause.threshold`, or on 410 Gone, its deliveries pause and
the events wait in its buffer instead of failing (workers/pausing.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
import structlog
from rq import Queue, Retry, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from standardwebhooks.webhooks import Webhook

from workers import context, envelope, keys, pending
from workers.changes import reported_change
from workers.delivery_log import BODY_EXCERPT, DeliveryLog, attempt_entry, now_ms
from workers.failures import RETRY_SCHEDULE, Verdict, judge_status, next_delay, retry_after
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import Pauses
from workers.poll_store import PollStore, marker_ttl
from workers.signatures import elements_signature
from workers.transport import CallbackClient, CallbackRefused

log = structlog.get_logger(logger_name="workers.delivery")


class DeliveryFailed(Exception):
    """The delivery failed for good: permanently, or with its retries spent."""


def safe_url(url: str) -> str:
    """Scheme, host and port only: paths and queries often carry tokens (Slack-style URLs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def deliver(
    item: str, instance_id: int, drained: bool = False, failure: dict[str, Any] | None = None,
    decides_for: str | None = None,
) -> str | Retry:  # fmt: skip
    """Deliver inbox `item` to instance `instance_id`.

    Returns "delivered" on a 2xx; "skipped" when the instance was deleted, disabled,
    unsubscribed or moved meanwhile, or polling already reported the change; "paused"
    when the item went to the instance's buffer (workers/pausing.py), to be sent when
    the endpoint is back; RQ's `Retry` after a retryable failure. Raises
    `DeliveryFailed` when it fails for good. `drained` marks jobs the drain made.
    `failure` is a first attempt a batch made (workers/batches.py, `Sent.dumps`): this
    job then decides on it exactly as if it had made that attempt itself.
    `decides_for` is the callback URL (its limit key) whose runners wait for this job's
    decision, whatever it is (workers/pending.py, `awaiting`): once it is made, they go on.
    """
    job = get_current_job()
    if job is not None and (job.number_of_retries or job.latest_result() is not None):
        failure = None  # RQ runs the job again (a retry, or requeued from the failed registry): that one sends
    try:
        return attempt(item, instance_id, drained=drained, failure=Sent.loads(failure) if failure else None)
    finally:
        if decides_for is not None:
            release_url(context.current().redis, decides_for, instance_id, job.id if job is not None else "")


def release_url(connection: redis.Redis, url: str, instance_id: int, job_id: str) -> None:
    """Job `job_id`, delivering to `instance_id`, has decided on the failure it was handed for
    callback URL `url` (workers/pending.py, `decided`); the instance's limit applies to the runner
    that may be queued. Raises only when Redis fails."""
    stored = connection.get(keys.instance(instance_id))
    limiter = Instance.loads(stored) if stored is not None else None
    queue = Queue(keys.DELIVERY_QUEUE, connection=connection, serializer=JSONSerializer)
    pending.decided(connection, queue, url, job_id, limiter)


def attempt(item: str, instance_id: int, *, drained: bool = False, failure: Sent | None = None) -> str | Retry:
    """One delivery attempt, as `deliver` describes."""
    event = InboxItem.loads(item)
    webhook_id = event.notification_id(instance_id)
    with structlog.contextvars.bound_contextvars(
        event_id=event.event_id, store_id=event.store_id, instance_id=instance_id, webhook_id=webhook_id
    ):
        ctx = context.current()
        events_log = DeliveryLog(ctx.redis, ctx.settings.event_retention)
        # The instance is read now, not at ingest: a changed callback URL applies to queued events.
        stored = ctx.redis.get(keys.instance(instance_id))
        instance = Instance.loads(stored) if stored is not None else None
        reason = skip_reason(event, instance)
        if reason is not None or instance is None:
            return _skip(events_log, webhook_id, instance_id, item, reason or "instance deleted")
        pauses = Pauses(ctx.redis)
        if failure is not None:
            return _failed(pauses, events_log, item, instance, webhook_id, failure)
        gate = pauses.gate(instance_id, item, drained=drained)
        if gate.parked:
            events_log.mark(webhook_id, instance_id, item, "PAUSED", PAUSED_REASON)
            log.info("delivery.paused")
            return "paused"
        if event.kind == "webhook" and already_reported(event, instance, webhook_id):
            return _skip(events_log, webhook_id, instance_id, item, "the poller already reported this change")
        sent = send(ctx.client, instance, envelope.build(event, instance), webhook_id)
        if sent.verdict is None:
            events_log.attempted(webhook_id, instance_id, item, sent.entry, "NOTIFIED")
            log.info("delivery.succeeded", url=sent.target, status=sent.status, ms=sent.ms)
            # Unconditionally: with several in flight, a success may end a run that began after its gate.
            pauses.succeeded(instance_id)
            return "delivered"
        return _failed(pauses, events_log, item, instance, webhook_id, sent)


def _skip(events_log: DeliveryLog, webhook_id: str, instance_id: int, item: str, reason: str) -> str:
    log.info("delivery.skipped", reason=reason)
    events_log.mark(webhook_id, instance_id, item, "SKIPPED", reason)
    return "skipped"


PAUSED_REASON = "deliveries to this instance are paused; the event waits in its buffer"


@dataclass(frozen=True)
class Sent:
    """One attempt's outcome: `verdict` is None on a 2xx."""

    target: str  # scheme://host:port, safe to log
    status: int | None
    ms: float
    entry: dict[str, Any]  # the event log's attempt record
    verdict: Verdict | None
    asked: int | None  # the receiver's Retry-After, clamped
    excerpt: bytes

    def dumps(self) -> dict[str, Any]:
        """A JSON-able form, for a job argument."""
        verdict = None if self.verdict is None else [self.verdict.retry, self.verdict.reason, self.verdict.gone]
        return {"target": self.target, "status": self.status, "ms": self.ms, "entry": self.entry,
                "verdict": verdict, "asked": self.asked, "excerpt": self.excerpt.decode("latin-1")}  # fmt: skip

    @classmethod
    def loads(cls, data: dict[str, Any]) -> Sent:
        verdict = None if data["verdict"] is None else Verdict(*data["verdict"])
        return cls(data["target"], data["status"], data["ms"], data["entry"], verdict, data["asked"],
                   data["excerpt"].encode("latin-1"))  # fmt: skip


def send(client: CallbackClient, instance: Instance, body: bytes, webhook_id: str) -> Sent:
    """POST `body` to the instance's callback URL once, signed. Never raises for what the
    endpoint or the network does: every outcome is in the returned `Sent`."""
    url = instance.callback_url or ""
    started = time.monotonic()
    status: int | None = None
    excerpt = b""
    asked: int | None = None
    verdict: Verdict | None = None
    try:
        answer = client.post(url, body, _headers(instance, webhook_id, body))
    except (CallbackRefused, httpx.InvalidURL, ValueError) as exc:
        # Retrying cannot change the answer.
        verdict = Verdict(False, f"{type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:
        verdict = Verdict(True, type(exc).__name__)
    else:
        status, excerpt = answer.status, answer.excerpt[:BODY_EXCERPT]
        asked = retry_after(answer.headers.get("retry-after"))
        verdict = None if 200 <= status < 300 else judge_status(status)
    ms = _ms(started)
    error = None if status else (verdict.reason if verdict else None)
    return Sent(safe_url(url), status, ms, attempt_entry(status, error, ms, excerpt), verdict, asked, excerpt)


def _failed(
    pauses: Pauses, events_log: DeliveryLog, item: str, instance: Instance, webhook_id: str, sent: Sent
) -> str | Retry:
    """After a failed attempt: pause (410, or too many retryable failures in a row), retry, or give up."""
    verdict = sent.verdict
    assert verdict is not None
    details = {"url": sent.target, "ms": sent.ms, "status": sent.status, "body": _text(sent.excerpt)}
    if verdict.gone:
        pauses.pause(instance.id, f"{verdict.reason}; resume by hand once it is back")
        return _park(pauses, events_log, item, instance, webhook_id, sent, details)
    job = get_current_job()
    retries_done = (job.number_of_retries or 0) if job is not None else len(RETRY_SCHEDULE)
    if verdict.retry:
        if pauses.failed(instance.id, instance.pause_threshold, verdict.reason):
            return _park(pauses, events_log, item, instance, webhook_id, sent, details)
        delay = next_delay(retries_done, sent.asked)
        if delay is not None:
            return _retry(events_log, webhook_id, instance.id, item, sent, delay, retries_done, details)
        reason = f"gave up after {retries_done + 1} attempts; last: {verdict.reason}"
    else:
        # A deliberate rejection of this event (or a URL we refuse): the endpoint itself is not down.
        pauses.succeeded(instance.id)
        reason = verdict.reason
    events_log.attempted(webhook_id, instance.id, item, sent.entry, "FAILED", reason=reason)
    log.error("delivery.failed", reason=reason, **details)
    if job is not None:
        job.retries_left = 0  # the enqueue-time policy is for crashes, not for this
    raise DeliveryFailed(reason)


def _retry(
    events_log: DeliveryLog, webhook_id: str, instance_id: int, item: str, sent: Sent, delay: int,
    retries_done: int, details: dict[str, Any],
) -> Retry:  # fmt: skip
    assert sent.verdict is not None
    events_log.attempted(webhook_id, instance_id, item, sent.entry, "DISPATCHED",
                         next_attempt=now_ms() + delay * 1000, reason=sent.verdict.reason)  # fmt: skip
    log.warning("delivery.attempt_failed", reason=sent.verdict.reason, retry_in=delay,
                retries_left=len(RETRY_SCHEDULE) - retries_done, **details)  # fmt: skip
    return Retry(max=len(RETRY_SCHEDULE), interval=delay)


def _park(
    pauses: Pauses, events_log: DeliveryLog, item: str, instance: Instance, webhook_id: str, sent: Sent,
    details: dict[str, Any],
) -> str | Retry:  # fmt: skip
    """Put a failed delivery in the paused instance's buffer; retry as usual if it resumed meanwhile."""
    assert sent.verdict is not None
    if not pauses.gate(instance.id, item).parked:
        job = get_current_job()
        retries_done = (job.number_of_retries or 0) if job is not None else 0
        delay = next_delay(retries_done, sent.asked) or RETRY_SCHEDULE[-1]
        return _retry(events_log, webhook_id, instance.id, item, sent, delay, retries_done, details)
    events_log.attempted(webhook_id, instance.id, item, sent.entry, "PAUSED", reason=PAUSED_REASON)
    log.warning("delivery.paused_instance", reason=sent.verdict.reason, **details)
    return "paused"


def on_failure(job: Job, connection: redis.Redis, kind: type, value: BaseException, traceback: Any) -> None:
    """RQ's failure callback: an attempt ended in an exception the job did not decide on (it
    crashed, or Redis blinked). Says so in the event log; RQ retries on the enqueue-time policy."""
    if isinstance(value, DeliveryFailed):
        return  # decided and logged by the job itself
    # A runner (workers/batches.py) delivers what it took; RQ runs it again with what it took.
    runner = job.func_name == "workers.batches.run_pending"
    deliveries = pending.carried(connection, job.id) if runner else [job.args[:2]]
    error = f"unexpected {kind.__name__} in the relay"
    events_log = DeliveryLog(connection, context.current().settings.event_retention)
    for item, instance_id in deliveries:
        webhook_id = InboxItem.loads(item).notification_id(int(instance_id))
        # Only deliveries still under way: one a batch already delivered, skipped or parked stays so.
        if job.retries_left:
            events_log.mark(webhook_id, int(instance_id), item, "DISPATCHED", f"{error}; retrying", only_pending=True)
        else:
            events_log.mark(webhook_id, int(instance_id), item, "FAILED", f"{error}; retries spent", only_pending=True)


def skip_reason(event: InboxItem, instance: Instance | None) -> str | None:
    """Why `event` must not go to `instance` now (deleted, events off, moved), or None."""
    if instance is None:
        return "instance deleted"
    if not instance.subscribed or instance.callback_url is None:
        return "instance disabled" if instance.disabled else "events not enabled"
    if instance.store_id != event.store_id:
        # The instance was moved to another store after this event was queued: not its data any more.
        return "instance moved to another store"
    return None


def _headers(instance: Instance, webhook_id: str, body: bytes) -> dict[str, str]:
    """Content type, ids and signatures: Cloud Elements', Standard Webhooks', or both."""
    headers = {"Content-Type": "application/json", "Elements-Webhook-Id": webhook_id}
    scheme = instance.signature_scheme
    if scheme in ("elements", "both") and instance.signature_key:
        headers["Elements-Webhook-Signature"] = elements_signature(instance.signature_key, body)
    if scheme in ("standard", "both") and instance.standard_secret:
        # A fresh timestamp per attempt (the spec's replay protection); the same webhook-id throughout.
        now = datetime.now(UTC)
        headers["webhook-id"] = webhook_id
        headers["webhook-timestamp"] = str(int(now.timestamp()))
        headers["webhook-signature"] = Webhook(instance.standard_secret).sign(webhook_id, now, body.decode())
    return headers


def _text(excerpt: bytes) -> str:
    return excerpt[:512].decode("utf-8", "replace")


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def already_reported(event: InboxItem, instance: Instance, webhook_id: str) -> bool:
    """True when polling (ours, or results posted from outside) already forwarded this change;
    otherwise records that this webhook reports it (workers/changes.py)."""
    change = reported_change(event)
    if change is None:
        return False
    ctx = context.current()
    ttl = marker_ttl(instance, ctx.settings.dedup_ttl)
    return not PollStore(ctx.redis).claim_webhook_change(instance.id, change, webhook_id, ttl)
