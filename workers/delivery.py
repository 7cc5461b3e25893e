"""The delivery job: POST one event to one instance's callback URL.

Retries are RQ's: a failed attempt raises `DeliveryFailed`, and RQ reschedules
the job on the Cloud Elements schedule (4^n seconds, 9 retries, about 73 hours in
all). After the last retry the job stays in RQ's failed registry, where it can be
inspected and requeued. Failures that retrying cannot fix (the SSRF guard refused
the host) skip the remaining retries and go straight to the failed registry.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import structlog
from rq import Retry, get_current_job

from workers import context, envelope, keys
from workers.changes import OBJECTS, Change
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.poll_store import PollStore, marker_ttl
from workers.signatures import elements_signature
from workers.transport import TOTAL_TIMEOUT, CallbackRefused, deadline

log = structlog.get_logger(logger_name="workers.delivery")

RETRY_SCHEDULE = [4**attempt for attempt in range(1, 10)]
JOB_TIMEOUT = 60  # seconds; a delivery takes at most TOTAL_TIMEOUT plus building the body
FAILURE_TTL = 30 * 24 * 3600
EXCERPT_BYTES = 2048


def retry_policy() -> Retry:
    return Retry(max=len(RETRY_SCHEDULE), interval=RETRY_SCHEDULE)


class DeliveryFailed(Exception):
    """One delivery attempt failed; RQ retries it unless it was marked permanent."""


def safe_url(url: str) -> str:
    """Scheme, host and port only: paths and queries often carry tokens (Slack-style URLs)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def deliver(item: str, instance_id: int) -> str:
    """Deliver inbox `item` to instance `instance_id`.

    Returns "delivered" on a 2xx, or "dropped" when the instance was deleted,
    disabled or unsubscribed meanwhile (logged, not retried). Raises
    `DeliveryFailed` on any other outcome, which RQ retries.
    """
    event = InboxItem.loads(item)
    webhook_id = event.notification_id(instance_id)
    with structlog.contextvars.bound_contextvars(
        event_id=event.event_id, store_id=event.store_id, instance_id=instance_id, webhook_id=webhook_id
    ):
        ctx = context.current()
        # The instance is read now, not at ingest: a changed callback URL applies to queued events.
        stored = ctx.redis.get(keys.instance(instance_id))
        if stored is None:
            log.info("delivery.dropped", reason="instance deleted")
            return "dropped"
        instance = Instance.loads(stored)
        url = instance.callback_url
        if not instance.subscribed or url is None:
            reason = "instance disabled" if instance.disabled else "events not enabled"
            log.info("delivery.dropped", reason=reason)
            return "dropped"
        if instance.store_id != event.store_id:
            # The instance was moved to another store after this event was queued: not its data any more.
            log.info("delivery.dropped", reason="instance moved to another store")
            return "dropped"
        if event.kind == "webhook" and _polled_already(event, instance, webhook_id):
            log.info("delivery.dropped", reason="the poller already reported this change")
            return "dropped"
        return _post(ctx.client, url, envelope.build(event, instance), instance, webhook_id)


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


def _post(client: httpx.Client, url: str, body: bytes, instance: Instance, webhook_id: str) -> str:
    headers = {"Content-Type": "application/json", "Elements-Webhook-Id": webhook_id}
    if instance.signature_key:
        headers["Elements-Webhook-Signature"] = elements_signature(instance.signature_key, body)
    started = time.monotonic()
    target = safe_url(url)
    try:
        with deadline(TOTAL_TIMEOUT), client.stream("POST", url, content=body, headers=headers) as response:
            excerpt = _read_excerpt(response)
            status = response.status_code
    except (CallbackRefused, httpx.InvalidURL, ValueError) as exc:
        # Retrying cannot change the answer: skip the remaining retries.
        _no_more_retries()
        log.error("delivery.refused", url=target, error=f"{type(exc).__name__}: {exc}")
        raise DeliveryFailed(str(exc)) from None
    except httpx.HTTPError as exc:
        _log_failure(target, started, error=type(exc).__name__)
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    if 200 <= status < 300:
        log.info("delivery.succeeded", url=target, status=status, ms=elapsed_ms)
        return "delivered"
    _log_failure(target, started, status=status, body=excerpt.decode("utf-8", "replace"))
    raise DeliveryFailed(f"callback answered {status}")


def _read_excerpt(response: httpx.Response) -> bytes:
    """The start of the response body, for the log. Reads at most 64 KiB so that
    a well-behaved small response leaves the connection reusable."""
    chunks = bytearray()
    for chunk in response.iter_raw():
        chunks.extend(chunk)
        if len(chunks) >= 65536:
            break
    return bytes(chunks[:EXCERPT_BYTES])


def _no_more_retries() -> None:
    job = get_current_job()
    if job is not None:
        job.retries_left = 0


def _log_failure(target: str, started: float, **details: object) -> None:
    job = get_current_job()
    retries_left = job.retries_left if job is not None else None
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    if retries_left:
        log.warning("delivery.attempt_failed", url=target, ms=elapsed_ms, retries_left=retries_left, **details)
    else:
        log.error("delivery.gave_up", url=target, ms=elapsed_ms, **details)
