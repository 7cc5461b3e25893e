"""How much work is waiting, read from Redis: shared by `/metrics`, `/ready` and the CLI.

One non-transactional pipeline of O(1) commands (LLEN, ZCARD), so a scrape costs
one round trip however long the queues are. Async, so the receiver's event loop
never blocks; the CLI runs it with `asyncio.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from workers import keys


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

    def as_dict(self) -> dict[str, object]:
        return {
            "inbox": self.inbox,
            "queued": self.queued,
            "scheduled": self.scheduled,
            "started": self.started,
            "failed": self.failed,
            "dispatchers": self.dispatchers,
            "pollingDisabled": self.polling_disabled,
        }


async def read(connection: aioredis.Redis) -> QueueStats:
    """One round trip. Raises redis errors when Redis is unreachable."""
    async with connection.pipeline(transaction=False) as pipe:
        pipe.llen(keys.INBOX)
        pipe.zcard(keys.DISPATCHERS)
        pipe.zcard(keys.POLL_DISABLED)
        for queue in keys.QUEUES:
            pipe.llen(_queue(queue))
            for kind in ("scheduled", "wip", "failed"):
                pipe.zcard(_registry(kind, queue))
        found = [int(value) for value in await pipe.execute()]
    inbox, dispatchers, disabled, *per_queue = found
    by_queue = {queue: per_queue[4 * i : 4 * i + 4] for i, queue in enumerate(keys.QUEUES)}
    return QueueStats(
        inbox=inbox,
        queued={queue: values[0] for queue, values in by_queue.items()},
        scheduled={queue: values[1] for queue, values in by_queue.items()},
        started={queue: values[2] for queue, values in by_queue.items()},
        failed={queue: values[3] for queue, values in by_queue.items()},
        dispatchers=dispatchers,
        polling_disabled=disabled,
    )
