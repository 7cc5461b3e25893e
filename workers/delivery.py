"""The delivery job: POST one event to one instance's callback URL, and log what happened.

Each attempt is written to the event log (workers/delivery_log.py). What a
failure means is decided in workers/failures.py: a retryable one returns RQ's
`Retry` with the delay to wait (the Cloud Elements schedule, 4^n seconds and 9
retries, or the receiver's `Retry-After`), so RQ's scheduler runs it again; a
permanent one, or the last, raises `DeliveryFailed` and the job waits in RQ's
failed registry while the event log says FAILED and why.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import structlog
from rq import Retry, get_current_job
from standardwebhooks.webhooks import Webhook

from workers import context, envelope, keys
from workers.changes import OBJECTS, Change
from workers.delivery_log import BODY_EXCERPT, DeliveryLog, attempt_entry, now_ms
from workers.failures import RETRY_SCHEDULE, Verdict, judge_status, next_delay, retry_after
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.poll_store import PollStore, marker_ttl
from workers.signatures import elements_signature
from workers.transport import TOTAL_TIMEOUT, CallbackRefused, deadline

log = structlog.get_logger(logger_name="workers.delivery")

JOB_TIMEOUT = 60  # seconds; a delivery takes at most TOTAL_TIMEOUT plus building the body
FAILURE_TTL = 30 * 24 * 3600


class DeliveryFailed(Exception):
    """The delivery failed for good: permanently, or with its retries spent."""


def safe_url(url: str) -> str:
    """Scheme, host and port only: paths and queries often carry tokens (Slack-style URLs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def deliver(item: str, instance_id: int) -> str | Retry:
    """Deliver inbox `item` to instance `instance_id`.

    Returns "delivered" on a 2xx, "skipped" when the instance was deleted, disabled,
    unsubscribed or moved meanwhile, or when polling already reported the change, and
    RQ's `Retry` after a retryable failure. Raises `DeliveryFailed` when it fails for good.
    """
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
        reason = _why_skip(event, instance, webhook_id)
        if reason is not None or instance is None or instance.callback_url is None:
            reason = reason or "instance deleted"
            log.info("delivery.skipped", reason=reason)
            events_log.mark(webhook_id, "SKIPPED", reason)
            return "skipped"
        body = envelope.build(event, instance)
        return _attempt(ctx.client, events_log, instance.callback_url, body, instance, webhook_id)


def _why_skip(event: InboxItem, instance: Instance | None, webhook_id: str) -> str | None:
    if instance is None:
        return "instance deleted"
    if not instance.subscribed or instance.callback_url is None:
        return "instance disabled" if instance.disabled else "events not enabled"
    if instance.store_id != event.store_id:
        # The instance was moved to another store after this event was queued: not its data any more.
        return "instance moved to another store"
    if event.kind == "webhook" and _polled_already(event, instance, webhook_id):
        return "the poller already reported this change"
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


def _attempt(
    client: httpx.Client, events_log: DeliveryLog, url: str, body: bytes, instance: Instance, webhook_id: str
) -> str | Retry:
    headers = _headers(instance, webhook_id, body)
    started = time.monotonic()
    target = safe_url(url)
    status: int | None = None
    excerpt = b""
    asked: int | None = None
    try:
        with deadline(TOTAL_TIMEOUT), client.stream("POST", url, content=body, headers=headers) as response:
            excerpt = _read_excerpt(response)
            status = response.status_code
            asked = retry_after(response.headers.get("retry-after"))
    except (CallbackRefused, httpx.InvalidURL, ValueError) as exc:
        # Retrying cannot change the answer.
        verdict = Verdict(False, f"{type(exc).__name__}: {exc}")
    except httpx.HTTPError as exc:
        verdict = Verdict(True, type(exc).__name__)
    else:
        if 200 <= status < 300:
            ms = _ms(started)
            events_log.attempted(webhook_id, attempt_entry(status, None, ms, excerpt), "NOTIFIED")
            log.info("delivery.succeeded", url=target, status=status, ms=ms)
            return "delivered"
        verdict = judge_status(status)
    ms = _ms(started)
    entry = attempt_entry(status, None if status else verdict.reason, ms, excerpt)
    job = get_current_job()
    retries_done = (job.number_of_retries or 0) if job is not None else len(RETRY_SCHEDULE)
    delay = next_delay(retries_done, asked) if verdict.retry else None
    if delay is None:
        reason = (
            verdict.reason
            if not verdict.retry
            else f"gave up after {retries_done + 1} attempts; last: {verdict.reason}"
        )
        events_log.attempted(webhook_id, entry, "FAILED", reason=reason)
        log.error("delivery.failed", url=target, ms=ms, status=status, reason=reason, body=_text(excerpt))
        raise DeliveryFailed(reason)
    events_log.attempted(webhook_id, entry, "DISPATCHED", next_attempt=now_ms() + delay * 1000, reason=verdict.reason)
    log.warning("delivery.attempt_failed", url=target, ms=ms, status=status, reason=verdict.reason,
                body=_text(excerpt), retry_in=delay, retries_left=len(RETRY_SCHEDULE) - retries_done)  # fmt: skip
    return Retry(max=len(RETRY_SCHEDULE), interval=delay)


def _text(excerpt: bytes) -> str:
    return excerpt[:512].decode("utf-8", "replace")


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _read_excerpt(response: httpx.Response) -> bytes:
    """The start of the response body, for the log. Reads at most 64 KiB so that
    a well-behaved small response leaves the connection reusable."""
    chunks = bytearray()
    for chunk in response.iter_raw():
        chunks.extend(chunk)
        if len(chunks) >= 65536:
            break
    return bytes(chunks[:BODY_EXCERPT])


def _polled_already(event: InboxItem, instance: Instance, webhook_id: str) -> bool:
    """True when polling (ours, or results posted from outside) already forwarded this change;
    otherwise records that this webhook reports it (workers/changes.py)."""
    what = envelope.meaning(event)
    if what.object_type not in OBJECTS or what.event_type not in ("CREATED", "UPDATED", "DELETED"):
        return False
    change = Change(what.object_type, what.object_id, what.event_type, event.event_created, None)
    ctx = context.current()
    ttl = marker_ttl(instance, ctx.settings.dedup_ttl)
    return not PollStore(ctx.redis).claim_webhook_change(instance.id, change, webhook_id, ttl)
