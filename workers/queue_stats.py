"""How much work is waiting, read from Redis: shared by `/metrics`, `/ready` and the CLI.

Non-transactional pipelines of O(1) commands (LLEN, ZCARD, HGET), so a scrape costs
two round trips however long the queues are (and one command per paused instance and
per rate-limited callback URL, at most 10,000 of each). Async, so the receiver's event loop
never blocks; the CLI runs it with `asyncio.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from workers import keys, pending

MAX_STATES = 10_000  # instances (and callback URLs) read per scrape; more than that is an incident anyway
RATE_LIMIT_KEYS = "rq:rl-keys"  # RQ's set of RateLimit keys (rq/rate_limit.py)


def _queue(name: str) -> str:
    return f"rq:queue:{name}"


def _registry(kind: str, name: str) -> str:
    # RQ's registry keys (rq/registry.py): sorted sets named rq:{kind}:{queue}.
    return f"rq:{kind}:{name}"


@dataclass(frozen=True)
class QueueStats:
    inbox: int  # accepted events not yet dispatched
    pending: int  # events waiting in callback URLs' pending lists for a runner (workers/pending.py)
    queued: dict[str, int]  # RQ jobs waiting to run, per queue
    scheduled: dict[str, int]  # jobs waiting for a retry time, per queue
    started: dict[str, int]  # jobs running now, per queue
    failed: dict[str, int]  # jobs in the failed registry, per queue
    rate_limited: dict[str, int]  # jobs held outside the queue by a callback URL's concurrency limit
    dispatchers: int  # workers' dispatcher threads that heartbeat
    polling_disabled: int  # instances whose polling stopped after failures
    # Instances whose deliveries are paused (after failures, by hand, or after a 410 Gone) or drain
    # their buffer (workers/pausing.py).
    delivery_states: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {
            "inbox": self.inbox,
            "pending": self.pending,
            "queued": self.queued,
            "scheduled": self.scheduled,
            "started": self.started,
            "failed": self.failed,
            "rateLimited": self.rate_limited,
            "dispatchers": self.dispatchers,
            "pollingDisabled": self.polling_disabled,
            "deliveryStates": self.delivery_states,
        }


async def read(connection: aioredis.Redis) -> QueueStats:
    """Two round trips. Raises redis errors when Redis is unreachable."""
    async with connection.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.srandmember(keys.DELIVERY_PAUSED, MAX_STATES)
        pipe.srandmember(RATE_LIMIT_KEYS, MAX_STATES)
        pipe.srandmember(pending.URLS, MAX_STATES)
        pipe.llen(keys.INBOX)
        pipe.zcard(keys.POLL_DISABLED)
        for queue in keys.QUEUES:
            pipe.llen(_queue(queue))
            for kind in ("scheduled", "wip", "failed"):
                pipe.zcard(_registry(kind, queue))
        (seconds, _), pausing, limits, urls, *counts = await pipe.execute()
    inbox, disabled, *per_queue = [int(value) for value in counts]
    by_queue = {queue: per_queue[4 * i : 4 * i + 4] for i, queue in enumerate(keys.QUEUES)}
    async with connection.pipeline(transaction=False) as pipe:
        # Dead dispatchers stay in the set until a live one recovers their items: count recent heartbeats.
        pipe.zcount(keys.DISPATCHERS, seconds - keys.DISPATCHER_DEAD_AFTER, "+inf")
        for instance_id in pausing:
            pipe.hget(keys.delivery_state(int(instance_id)), "state")
        for limit in limits:
            pipe.zcard(f"rq:rl:{limit.decode()}:rate_limited")
        for url in urls:
            pipe.llen(pending.pending(url.decode()))
        dispatchers, *rest = await pipe.execute()
    states, held = rest[: len(pausing)], rest[len(pausing) : len(pausing) + len(limits)]
    waiting = rest[len(pausing) + len(limits) :]
    counts_by_state = {"paused": 0, "draining": 0}
    for state in states:
        name = state.decode() if isinstance(state, bytes) else state
        if name in counts_by_state:
            counts_by_state[name] += 1
    return QueueStats(
        inbox=inbox,
        pending=sum(int(n) for n in waiting),
        queued={queue: values[0] for queue, values in by_queue.items()},
        scheduled={queue: values[1] for queue, values in by_queue.items()},
        started={queue: values[2] for queue, values in by_queue.items()},
        failed={queue: values[3] for queue, values in by_queue.items()},
        # Only delivery jobs carry a rate limit (workers/jobs.py).
        rate_limited={keys.DELIVERY_QUEUE: sum(int(n) for n in held)},
        dispatchers=int(dispatchers),
        polling_disabled=disabled,
        delivery_states=counts_by_state,
    )
