"""Batched deliveries: what is pending for one callback URL, in one RQ job.

The dispatcher appends events to their callback URL's pending list and keeps one
runner job per URL waiting to start (workers/pending.py). A runner takes up to
MAX_EVENTS entries when it starts, so a backlog leaves in full batches and a lone
event at once. While its batches go out cleanly and more keeps coming, it takes
again, for about BUDGET_SECONDS in all: under a steady stream an event waits for
the batch on the wire, not for RQ to start a job. Finding nothing, it waits up to
LINGER_SECONDS for more, as the URL's waiting runner, unless another job waits for
its worker (workers/lingering.py). RQ's own work per job (dequeue, registries, heartbeats, rate
limiter, cleanup: about 45 Redis commands in 15 round trips, see
docs/performance.md) is paid once per batch, and so is ours: a batch reads its
instances in one MGET, passes all its events through the pause gate and the
polling dedup in one script call each, sends them one by one, and records every
outcome in one transaction at the end. Each event is decided exactly as a single
delivery decides it (workers/delivery.py: skip, park, already reported, send).

A batch never decides on failures. At its first failed attempt it hands that event
to a job of its own carrying the attempt, which decides exactly as a single delivery
would (retry on the schedule, pause, fail into RQ's failed registry), and the rest
to single jobs; so does a batch that has run for BUDGET_SECONDS, so that a slow
endpoint holds a worker no longer than a single delivery would. Handed-off jobs go
through the same per-URL limiter, and pass the gate and the dedup again (claiming a
change again for the same notification is harmless). Until they have decided, the URL's
runners take nothing (workers/pending.py, `awaiting`): a runner queued for events that
came while the failing request was on the wire would otherwise start first (RQ's limiter
starts the longest waiting) and send them before the failure is decided.

A runner whose worker died is run again by RQ with what it had taken. Its answers were
noted in Redis as they came, in one write at most every NOTE_EVERY_MS (so each answer of
a slow URL at once): the run again records those and sends the rest (the event that was
on the wire first, and what was answered since the last note); after a second crash it
hands each of them to a job of its own.
"""

from __future__ import annotations

import random
import time
from typing import Any

import redis
import structlog
from redis.client import Pipeline
from rq import Queue, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer

from workers import context, envelope, jobs, keys, lingering, metrics, pending
from workers.batch_checks import Delivery, decide
from workers.delivery import Sent, send
from workers.delivery_log import DeliveryLog, Outcome
from workers.inbox import InboxItem
from workers.instances import Instance
from workers.pausing import Pauses
from workers.poll_store import PollStore

log = structlog.get_logger(logger_name="workers.batches")

MAX_EVENTS = 200
BUDGET_SECONDS = 1.0
# Answers are noted in Redis in one write once this long has passed since the last note: a crash
# re-sends what was on the wire and at most this much of what was answered, and a fast URL's batch
# pays one write per NOTE_EVERY_MS, not one per answer (which, under load, slowed every answer).
NOTE_EVERY_MS = 25.0
# How long a runner whose batch went out cleanly waits for more before it ends (workers/lingering.py):
# events of a steady stream come closer together than this.
LINGER_SECONDS = 0.05


def run_pending(url: str) -> str:
    """The runner job of callback URL `url` (workers/pending.py): deliver what it takes of the URL's
    pending entries (or what this job took before its worker died), and take again while batches
    go out cleanly and entries keep coming, for up to BUDGET_SECONDS in all. Returns a summary of
    its last batch, such as "delivered 48, handed off 2, given back 0".

    Raises (and RQ runs it again, with what it took) only when Redis fails: before anything was
    sent, while an answer is noted, or while the outcomes are written."""
    ctx = context.current()
    job = get_current_job()
    job_id = job.id if job is not None else pending.runner_job_id(url)
    deadline = time.monotonic() + job_budget()
    queue = Queue(keys.DELIVERY_QUEUE, connection=ctx.redis, serializer=JSONSerializer)
    summary, limiter, first, drained = "nothing pending", None, True, True
    # Each instance is read once per job, by the first batch with an event for it: a job runs for
    # about a second, as one batch did before jobs took again, so a change applies within that long.
    instances: dict[int, Instance] = {}
    read: set[int] = set()
    # Each turn after the first saves RQ's ~20 round trips of a new job (see docs/performance.md):
    # under a steady stream an event waits for the batch on the wire, not for a job to start.
    following: pending.Taken | None = None  # what the last batch's closing transaction took
    take_now = True  # the first turn, or entries known to be there: take (or deliver) whatever the time
    while take_now or time.monotonic() < deadline:
        taken = following or pending.take(ctx.redis, url, job_id, MAX_EVENTS, deadline - time.monotonic())
        following, take_now = None, False
        if taken.held:
            # A failure handed off earlier is not decided yet: the job deciding it queues the next runner.
            summary, drained = "held: a failure handed off earlier is not decided yet", True
            break
        if not taken.entries:
            # After a clean batch, wait a little for more rather than leave the next event to a new job.
            linger = min(LINGER_SECONDS, deadline - time.monotonic())
            take_now = not first and linger > 0 and lingering.linger(ctx.redis, queue, url, job_id, linger)
            if take_now:
                continue
            break
        unread = {instance_id for _, instance_id in taken.entries} - read
        instances.update(read_instances(ctx.redis, unread))
        read |= unread
        limiter = instances.get(taken.entries[-1][1])
        if taken.left and first:
            # Start the next batch beside this one now, up to the URL's concurrency limit.
            pending.ensure_runner(ctx.redis, queue, url, limiter)
        first = False
        answered: dict[str, dict[str, Any]] = {}
        if taken.crashes:
            # Its worker died mid-batch. What it noted as answered is recorded, not sent again; the
            # rest is sent again in order, at once, in the slot of the URL's limit this job holds.
            # After a second crash each goes to a job of its own, so that an event that kills workers
            # cannot take the others down with it again.
            answered = pending.read_answered(ctx.redis, job_id)
            log.warning("batch.resumed_after_crash", events=len(taken.entries), answered=len(answered),
                        crashes=taken.crashes)  # fmt: skip
        batch = [(InboxItem.loads(text), text, instance_id) for text, instance_id in taken.entries]
        with structlog.contextvars.bound_contextvars(url=url):
            summary, gave_back, handed_off, following = deliver(
                url, job_id, batch, instances, answered, isolate=taken.crashes > 1, deadline=deadline,
                take_next=not taken.crashes,
            )  # fmt: skip
            # took_next: entries the closing transaction took for the next batch (None: it did not take).
            log.info("batch.done", events=len(batch), summary=summary,
                     took_next=None if following is None else len(following.entries))  # fmt: skip
        # A failure is decided by its own job before this URL gets more; a crashed batch ends its job.
        ended = bool(gave_back or handed_off or taken.crashes)
        drained = not ended and not taken.left  # else it may leave entries behind for a successor
        if ended:
            break
        take_now = following is not None and bool(following.entries)  # taken: this job delivers them
    if not drained:
        # It may leave entries behind (given back, or still pending when the budget ran out).
        pending.ensure_runner(ctx.redis, queue, url, limiter)
    return summary


def job_budget() -> float:
    """A runner job's time: BUDGET_SECONDS, give or take a quarter. Runners of one URL started
    together (by a burst) on different workers would otherwise keep ending together, and each job's
    end leaves its worker 20–40 ms of RQ's bookkeeping before the next starts: with every worker in
    that gap at once, the URL's events wait for all of it (end-to-end p99 doubled after a burst)."""
    return BUDGET_SECONDS * random.uniform(0.75, 1.25)  # noqa: S311 (spread, not secrecy)


def deliver(
    url: str,
    job_id: str,
    batch: list[Delivery],
    instances: dict[int, Instance],
    answered: dict[str, dict[str, Any]] | None = None,
    *,
    isolate: bool = False,
    deadline: float | None = None,
    take_next: bool = False,
) -> tuple[str, int, int, pending.Taken | None]:
    """Deliver runner `job_id`'s `batch` in order, until the first failure or BUDGET_SECONDS. Then,
    in one transaction: record every outcome; hand the failed event (with its attempt) to a job of
    its own; give what is left back to the head of the URL's pending list; clear the taken list.
    Events in `answered` (noted before the runner's worker died) are recorded, not sent; with
    `isolate`, each of the others goes to a job of its own, unsent. `deadline` (monotonic) ends
    the batch early, as BUDGET_SECONDS from now does by default. With `take_next`, a batch that went
    out cleanly before the deadline takes the next in the same transaction (saving a round trip a
    turn). Returns the summary, how many entries were given back, how many handed off, and what
    was taken next (None when nothing was asked for)."""
    deadline = time.monotonic() + BUDGET_SECONDS if deadline is None else deadline
    ctx = context.current()
    pauses = Pauses(ctx.redis)
    outcomes, to_send, singles = decide(pauses, PollStore(ctx.redis), batch, instances, ctx.settings.dedup_ttl)
    if answered:
        unanswered: list[Delivery] = []
        for event, text, instance_id in to_send:
            webhook_id = event.notification_id(instance_id)
            if webhook_id in answered:
                attempt = answered[webhook_id]
                outcomes.append(
                    Outcome(webhook_id, instance_id, text, "NOTIFIED", attempt=attempt, received=event.received)
                )
            else:
                unanswered.append((event, text, instance_id))
        to_send = unanswered
    if isolate:
        singles, to_send = singles + to_send, []
    back: list[Delivery] = []
    failure: Sent | None = None
    spent, sends = 0.0, 0
    unnoted: list[tuple[str, dict[str, Any]]] = []  # answered since the last note
    noted_at = time.monotonic()
    for n, (event, text, instance_id) in enumerate(to_send):
        if n and time.monotonic() > deadline:
            back = to_send[n:]
            break
        webhook_id = event.notification_id(instance_id)
        instance = instances[instance_id]
        try:
            sent = send(ctx.client, instance, envelope.build(event, instance), webhook_id)
            if sent.verdict is None:
                # The event's fields on its line, not bound around the send: nothing in there logs, and
                # binding five context variables per event cost a worker as much as the line itself.
                log.info("delivery.succeeded", url=sent.target, status=sent.status, ms=sent.ms,
                         event_id=event.event_id, store_id=event.store_id, instance_id=instance_id,
                         webhook_id=webhook_id, batch_position=n)  # fmt: skip
        except Exception:
            # Not the endpoint's doing (a bad record, a bug): this event and the rest become single
            # jobs, each with its own crash retries, so one bad event cannot stall the URL.
            log.exception("batch.attempt_crashed", position=n, event_id=event.event_id, instance_id=instance_id)
            singles = to_send[n:]
            break
        spent, sends = spent + sent.ms, sends + 1
        if sent.verdict is not None:
            failure, singles, back = sent, to_send[n : n + 1], to_send[n + 1 :]
            break
        unnoted.append((webhook_id, sent.entry))
        if (now := time.monotonic()) - noted_at >= NOTE_EVERY_MS / 1000:
            pending.note_answered(ctx.redis, job_id, unnoted)
            unnoted, noted_at = [], now
        outcomes.append(Outcome(webhook_id, instance_id, text, "NOTIFIED", attempt=sent.entry, received=event.received))
    delivered = sorted({o.instance_id for o in outcomes if o.status == "NOTIFIED"})
    with ctx.redis.pipeline(transaction=True) as pipe:
        DeliveryLog(ctx.redis, ctx.settings.event_retention).finish(outcomes, pipe)
        # Once per instance, and before any failure handed off is judged: successes end a failure run.
        pauses.succeeded_many(delivered, pipe)
        if singles:
            hand_off(pipe, url, [(text, instance_id) for _, text, instance_id in singles], failure, instances)
        pending.finish(pipe, url, job_id, [pending.entry(text, i) for _, text, i in back], spent / max(sends, 1))
        again = take_next and not (singles or back) and (budget := deadline - time.monotonic()) > 0
        if again:
            pending.take_in(pipe, url, job_id, MAX_EVENTS, budget)
        replies = pipe.execute()
    following = pending.read_taken(replies[-1]) if again else None
    if singles:
        log.info("batch.handed_off", events=len(singles))
    metrics.observe_batch([o.status for o in outcomes], [o.attempt["ms"] / 1000 for o in outcomes if o.attempt])
    return _summary(outcomes, len(singles), len(back)), len(back), len(singles), following


def read_instances(connection: redis.Redis, ids: set[int]) -> dict[int, Instance]:
    """The instances with these ids that exist now, in one MGET."""
    wanted = sorted(ids)
    if not wanted:
        return {}
    found = connection.mget([keys.instance(i) for i in wanted])
    return {i: Instance.loads(raw) for i, raw in zip(wanted, found, strict=True) if raw is not None}


def hand_off(
    pipe: Pipeline, url: str, deliveries: list[tuple[str, int]], failure: Sent | None, instances: dict[int, Instance]
) -> None:
    """In `pipe` (a MULTI): queue each of `deliveries`, (inbox item, instance id), as a single
    delivery job, and point the event log at it. `failure` is the first one's failed attempt: its
    job decides on it instead of sending again. Runners of callback URL `url` take nothing until
    every one of these jobs has decided (workers/pending.py, `awaiting`)."""
    ctx = context.current()
    queue = Queue(keys.DELIVERY_QUEUE, connection=ctx.redis, serializer=JSONSerializer)
    events_log = DeliveryLog(ctx.redis, ctx.settings.event_retention)
    created: list[Job] = []
    for n, (text, instance_id) in enumerate(deliveries):
        event = InboxItem.loads(text)
        notification = event.notification_id(instance_id)
        job_id = f"dlv-{ordered_id(n)}-{notification.replace('-', '')}"
        decided = failure.dumps() if failure is not None and n == 0 else None
        created.append(jobs.delivery_job(queue, event, text, instance_id, instances.get(instance_id), job_id,
                                         failure=decided, decides_for=url))  # fmt: skip
        events_log.handed_off(pipe, notification, job_id)
    pending.awaiting(pipe, url, [job.id for job in created])
    jobs.enqueue(queue, created, pipe)


def ordered_id(position: int) -> str:
    """A job id part that sorts in creation order: RQ's rate limiter releases held jobs of the same
    second in id order, so ids in order keep the events of a hand-off in order."""
    return f"{time.time_ns():016x}{position:04x}"


def _summary(outcomes: list[Outcome], handed_off: int, given_back: int) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        what = {"NOTIFIED": "delivered", "SKIPPED": "skipped", "PAUSED": "paused"}[outcome.status]
        counts[what] = counts.get(what, 0) + 1
    parts = [f"{what} {count}" for what, count in sorted(counts.items())]
    return ", ".join([*parts, f"handed off {handed_off}", f"given back {given_back}"])
