"""How much work is waiting, read from Redis: shared by `/metrics`, `/ready` and the CLI.

Non-transactional pipelines of O(1) commands (LLEN, ZCARD, HGET), so a scrape costs
two round trips however long the queues are. Async, so the receiver's event loop
never blocks; the CLI runs it with `asyncio.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from workers import keys

MAX_STATES = 10_000  # instances read per scrape; more paused than that is an incident anyway


def _queue(name: str) -> str:
    return f"rq:queue:{name}"


def _registry(kind: str, name: str) -> str:
    # RQ's registry keys (rq/registry.py): sorted sets named rq:{kind}:{queue}.
    return f"rq:{kind}:{name}"


@dataclass(frozen=True)
class QueueStats:
    inbox: int  # accepted events not yet turned into delivery jobs
    queued: dict[str, int]  # RQ jobs waiting to run, per queue
    scheduled: dict[str, int]  # jobs waiting for a retry time, per queue
    started: dict[str, int]  # jobs running now, per queue
    failed: dict[str, int]  # jobs in the failed registry, per queue
    dispatchers: int  # workers' dispatcher threads that heartbeat
    polling_disabled: int  # instances whose polling stopped after failures
    # Instances whose deliveries are paused (after failures, by hand, or after a 410 Gone) or drain
    # their buffer (workers/pausing.py).
    delivery_states: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {
            "inbox": self.inbox,
            "queued": self.queued,
            "scheduled": self.scheduled,
            "started": self.started,
            "failed": self.failed,
            "dispatchers": self.dispatchers,
            "pollingDisabled": self.polling_disabled,
            "deliveryStates": self.delivery_states,
        }


async def read(connection: aioredis.Redis) -> QueueStats:
    """Two round trips. Raises redis errors when Redis is unreachable."""
    async with connection.pipeline(transaction=False) as pipe:
        pipe.srandmember(keys.DELIVERY_PAUSED, MAX_STATES)
        pipe.llen(keys.INBOX)
        pipe.zcard(keys.DISPATCHERS)
        pipe.zcard(keys.POLL_DISABLED)
        for queue in keys.QUEUES:
            pipe.llen(_queue(queue))
            for kind in ("scheduled", "wip", "failed"):
                pipe.zcard(_registry(kind, queue))
        pausing, *counts = await pipe.execute()
    inbox, dispatchers, disabled, *per_queue = [int(value) for value in counts]
    by_queue = {queue: per_queue[4 * i : 4 * i + 4] for i, queue in enumerate(keys.QUEUES)}
    return QueueStats(
        inbox=inbox,
        queued={queue: values[0] for queue, values in by_queue.items()},
        scheduled={queue: values[1] for queue, values in by_queue.items()},
        started={queue: values[2] for queue, values in by_queue.items()},
        failed={queue: values[3] for queue, values in by_queue.items()},
        dispatchers=dispatchers,
        polling_disabled=disabled,
        delivery_states=await _delivery_states(connection, [int(i) for i in pausing]),
    )


async def _delivery_states(connection: aioredis.Redis, instance_ids: list[int]) -> dict[str, int]:
    counts = {"paused": 0, "draining": 0}
    if not instance_ids:
        return counts
    async with connection.pipeline(transaction=False) as pipe:
        for instance_id in instance_ids:
            pipe.hget(keys.delivery_state(instance_id), "state")
        for state in await pipe.execute():
            name = state.decode() if isinstance(state, bytes) else state
            if name in counts:
                counts[name] += 1
    return counts
