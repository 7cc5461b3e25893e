"""The poller: asks Ecwid what changed and forwards it like a webhook.

For instances with `event.notification.enabled` and `event.vendor.type: polling`.
A round, for each object in `event.objects`:

* orders, products, customers, carts: list with `updatedFrom` = the cursor
  minus `OVERLAP` (Ecwid's search may lag), plus `/{object}/deleted` where Ecwid
  has it; every page, 100 at a time;
* categories: `GET /latest-stats`; only when `categoriesUpdated` moved, list all
  categories and diff them against the fingerprints kept from last time.

Changes are classified (workers/changes.py), filtered against what was already
forwarded (by an earlier round or by a webhook), and queued with the new cursors
in one transaction (workers/poll_store.py).

Scheduling: `ecwid-relay scheduler` runs RQ's cron, which enqueues `plan` every
few seconds; `plan` claims the due instances (atomically, so two schedulers
cannot both claim one) and enqueues one `poll` job each. A round also takes a
per-instance lock and skips if the instance was polled less than an interval
ago, so a stray extra job never polls twice in one window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import orjson
import structlog
from rq import Queue
from rq.serializers import JSONSerializer

from workers import context, keys
from workers.changes import OBJECTS, Change, ObjectKind, classify, classify_deleted, diff_categories, timestamp
from workers.ecwid_api import AccessDenied, EcwidApi, EcwidError, RateLimited
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.poll_store import PollStore, marker_ttl
from workers.rate_limit import TokenBudget

log = structlog.get_logger(logger_name="workers.polling")

OVERLAP = 300  # seconds each query reaches back before the cursor
ROUND_TIMEOUT = 600  # the poll job's timeout; also bounds the time spent waiting for rate limits
# The round lock lapses this long after a round's last request to Ecwid, so a killed round
# delays the next by at most that. It only saves requests: commits are safe to overlap.
LOCK_TTL = 120
# A claimed instance whose round has not begun by then is claimed again (its job expires first).
LEASE = 300
DENIED_LIMIT = 3  # consecutive rounds answered 402/403 before polling stops
EARLY = 10  # seconds: a round this much before its interval ends still counts as on time


@dataclass(frozen=True)
class Outcome:
    instance_id: int
    outcome: str  # ok | failed | skipped | disabled
    forwarded: int = 0
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def poll_round(ctx: context.WorkerContext, instance_id: int, *, force: bool = False) -> Outcome:
    """Run one polling round for the instance now, unless it should not poll.

    `force` (`ecwid-relay poll --once`) ignores the interval, never the lock.
    Ecwid errors are recorded and counted, never raised; Redis errors propagate.
    """
    with structlog.contextvars.bound_contextvars(instance_id=instance_id):
        store = PollStore(ctx.redis)
        record = ctx.redis.get(keys.instance(instance_id))
        if record is None:
            return Outcome(instance_id, "skipped", detail="instance not found")
        instance = Instance.loads(record)
        token = instance.api_token
        state = store.state(instance_id)
        reason = _why_not(instance, token, state, force)
        if reason is not None or token is None:
            return Outcome(instance_id, "skipped", detail=reason or "no Ecwid API token")
        lock = store.acquire(instance_id, LOCK_TTL)
        if lock is None:
            return Outcome(instance_id, "skipped", detail="a round for this instance is already running")
        try:
            return _run(ctx, store, instance, token, state, lambda: store.extend(instance_id, lock, LOCK_TTL))
        finally:
            store.release(instance_id, lock)


def _why_not(instance: Instance, token: str | None, state: dict[str, str], force: bool) -> str | None:
    if not instance.polls:
        return "instance does not poll (events disabled, instance disabled, or event.vendor.type is webhook)"
    if token is None:
        return "no Ecwid API token (set ecwid.api.token, or connect with OAuth2)"
    if "disabled_reason" in state:
        return "polling disabled: " + state["disabled_reason"]
    since_last = time.time() - int(state.get("last_started", "0"))
    if not force and since_last < instance.poll_interval * 60 - EARLY:
        return f"polled {int(since_last)} s ago; the interval is {instance.poll_interval} min"
    return None


def _run(
    ctx: context.WorkerContext,
    store: PollStore,
    instance: Instance,
    token: str,
    state: dict[str, str],
    keepalive: Callable[[], object],
) -> Outcome:
    started = time.time()
    store.started(instance.id, started)
    api = EcwidApi(ctx.ecwid, ctx.settings.ecwid_api_url, instance.store_id, token, TokenBudget(ctx.redis),
                   deadline=time.monotonic() + ROUND_TIMEOUT - 30, keepalive=keepalive)  # fmt: skip
    changes: list[Change] = []
    fields: dict[str, str] = {}
    errors: list[str] = []
    denied = False
    wait = 0.0
    for name in instance.poll_objects:
        try:
            found, moved = fetch(api, OBJECTS[name], instance, state, started)
        except AccessDenied as exc:
            denied = True
            errors.append(str(exc))
            continue
        except RateLimited as exc:
            errors.append(str(exc))
            wait = exc.retry_after
            break  # the token is paused for every object alike
        except EcwidError as exc:
            errors.append(str(exc))
            continue
        changes.extend(found)
        fields.update(moved)
    forwarded = store.commit(instance, changes, fields, marker_ttl(instance, ctx.settings.dedup_ttl))
    error = "; ".join(errors) or None
    next_due = max(started + instance.poll_interval * 60, time.time() + wait)
    counts = store.finish(instance.id, next_due, error, denied)
    if error is None:
        log.info("poll.round_finished", forwarded=forwarded, changes=len(changes))
        return Outcome(instance.id, "ok", forwarded)
    log.warning("poll.round_failed", forwarded=forwarded, error=error, **counts)
    limit = ctx.settings.poll_failure_limit
    if denied and counts["denied"] >= DENIED_LIMIT:
        reason = (
            f"Ecwid refused access {counts['denied']} rounds in a row: {error}. Fix the token or its scopes "
            "(or drop the refused objects from event.objects), then enable events again to resume"
        )
    elif counts["failures"] >= limit:
        reason = f"{counts['failures']} consecutive failed rounds; last: {error}"
    else:
        return Outcome(instance.id, "failed", forwarded, error)
    store.disable(instance.id, reason)
    log.error("poll.disabled", reason=reason)
    return Outcome(instance.id, "disabled", forwarded, reason)


def fetch(
    api: EcwidApi, kind: ObjectKind, instance: Instance, state: dict[str, str], started: float
) -> tuple[list[Change], dict[str, str]]:
    """One object's changes since its cursor, and the state fields to store with them."""
    if not kind.filtered:
        return _categories(api, state, started)
    cursor = state.get(f"cursor:{kind.name}")
    # The first round begins when polling was switched on (at creation, usually): no store dump.
    since = int(cursor or state.get("since") or instance.created_epoch)
    start = since - OVERLAP if cursor is not None else since
    params: dict[str, object] = {"updatedFrom": start}
    if kind.sort:
        params["sortBy"] = kind.sort
    now = int(started)
    listed = api.list_all(f"/{kind.name}", params, kind.id_field)
    found = [c for item in listed if (c := classify(kind, item, since, now))]
    if kind.has_deleted:
        deleted = api.list_all(f"/{kind.name}/deleted", {"from_date": start})
        found += [c for item in deleted if (c := classify_deleted(kind, item, now))]
    return found, {f"cursor:{kind.name}": str(max(since, int(started)))}


def _categories(api: EcwidApi, state: dict[str, str], started: float) -> tuple[list[Change], dict[str, str]]:
    stamp = str(api.get("/latest-stats").get("categoriesUpdated") or "")
    seen = state.get("categories:seen")
    if seen is not None and stamp and stamp == state.get("categories:stamp"):
        return [], {}
    items = api.list_all("/categories", {"hidden_categories": "true"})
    before: dict[str, str] = orjson.loads(seen) if seen is not None else {}
    changes, after = diff_categories(before, items, timestamp(stamp) or int(started))
    if seen is None:
        changes = []  # the first listing is the baseline, not a dump of the store
    return changes, {"categories:stamp": stamp, "categories:seen": orjson.dumps(after).decode()}


# -- jobs -----------------------------------------------------------------------------


def plan() -> int:
    """RQ cron job: enqueue a `poll` job for every instance whose round is due. Returns how many."""
    ctx = context.current()
    now = time.time()
    ids = PollStore(ctx.redis).claim_due(now, lease=LEASE)
    if ids:
        queue = Queue(keys.POLL_QUEUE, connection=ctx.redis, serializer=JSONSerializer)
        queue.enqueue_many([
            Queue.prepare_data("workers.polling.poll", args=(i,), job_id=f"poll-{i}-{int(now)}",
                               timeout=ROUND_TIMEOUT, ttl=LEASE - 30, result_ttl=0, failure_ttl=7 * 24 * 3600,
                               description=f"poll instance {i}")
            for i in ids
        ])  # fmt: skip
        log.info("poll.planned", instances=len(ids))
    return len(ids)


def poll(instance_id: int) -> dict[str, object]:
    """RQ job: one polling round for one instance."""
    outcome = poll_round(context.current(), instance_id)
    if outcome.outcome == "skipped":
        log.info("poll.skipped", instance_id=instance_id, reason=outcome.detail)
    return outcome.as_dict()


def ingest_results(item: str) -> dict[str, object]:
    """RQ job: classify and forward a list response posted by an outside polling scheduler
    (receiver/poll_results.py) exactly as the poller's own results."""
    results = InboxItem.loads(item)
    ctx = context.current()
    instance_id = results.instances[0]
    record = ctx.redis.get(keys.instance(instance_id))
    instance = Instance.loads(record) if record is not None else None
    if instance is None or not instance.subscribed or instance.store_id != results.store_id:
        log.info("poll.results_dropped", instance_id=instance_id, reason="instance gone, unsubscribed or moved")
        return Outcome(instance_id, "skipped", detail="instance gone, unsubscribed or moved").as_dict()
    kind = OBJECTS[results.event_type]
    now = int(results.received)
    items = orjson.loads(results.raw).get("items", [])
    store = PollStore(ctx.redis)
    fields: dict[str, str] = {}
    if kind.filtered:
        changes = [c for item in items if (c := classify(kind, item, None, now))]
    else:
        # Categories carry no dates: compare their content with what was posted before (a page
        # is not the whole store, so absent ones are not taken as deleted). Kept apart from the
        # poller's own listing, which a concurrent round rewrites.
        seen: dict[str, str] = orjson.loads(store.state(instance_id).get("results:categories:seen", "{}"))
        posted = {str(item.get("id")) for item in items if isinstance(item, dict)}
        changes, after = diff_categories({k: v for k, v in seen.items() if k in posted}, items, now, dated=False)
        fields["results:categories:seen"] = orjson.dumps({**seen, **after}).decode()
    forwarded = store.commit(instance, changes, fields, marker_ttl(instance, ctx.settings.dedup_ttl))
    log.info("poll.results_ingested", instance_id=instance_id, changes=len(changes), forwarded=forwarded)
    return Outcome(instance_id, "ok", forwarded).as_dict()
