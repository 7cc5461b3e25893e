"""Instances in Redis: create, read, change and delete, keeping the indexes in step.

Every write is one MULTI/EXEC transaction over the record and its index sets, so
a failed request changes nothing. Changes use optimistic locking (WATCH): a
concurrent change to the same instance makes the later one fail with 409.
"""

from __future__ import annotations

import builtins
import hmac
import secrets
import time
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from receiver.errors import Conflict, NotFound
from workers import keys
from workers.instances import Instance, now_iso
from workers.pausing import PAUSE_SCRIPT, RESUME_SCRIPT, now_ms

# One round trip for routing: the store's index, then each record it names.
_LOAD_STORE = """
local ids = redis.call('SMEMBERS', KEYS[1])
local records = {}
for i, id in ipairs(ids) do
  local record = redis.call('GET', ARGV[1] .. id)
  if record then table.insert(records, record) end
end
return records
"""


class InstanceStore:
    def __init__(self, connection: aioredis.Redis) -> None:
        self.redis = connection
        self._load_store = connection.register_script(_LOAD_STORE)
        self._pause = connection.register_script(PAUSE_SCRIPT)
        self._resume = connection.register_script(RESUME_SCRIPT)

    async def for_store(self, store_id: int) -> list[Instance]:
        """Every instance attached to an Ecwid store: an index lookup, never a scan."""
        records = await self._load_store(keys=[keys.store_instances(store_id)], args=[keys.PREFIX + "instance:"])
        return [Instance.loads(record) for record in records]

    async def owned(self, instance_id: int, owner: str) -> Instance:
        """The instance, if `owner` owns it; raises NotFound otherwise (no hint that it exists)."""
        record = await self.redis.get(keys.instance(instance_id))
        if record is None:
            raise NotFound(f"instance {instance_id} not found")
        instance = Instance.loads(record)
        if instance.owner != owner:
            raise NotFound(f"instance {instance_id} not found")
        return instance

    async def list(self, owner: str) -> list[Instance]:
        ids = sorted(int(raw) for raw in await self.redis.smembers(keys.user_instances(owner)))
        if not ids:
            return []
        records = await self.redis.mget([keys.instance(i) for i in ids])
        return [Instance.loads(record) for record in records if record is not None]

    async def create(self, draft: Instance) -> Instance:
        """Store `draft` under a fresh id with a fresh token; returns what was stored."""
        instance_id = int(await self.redis.incr(keys.INSTANCE_SEQUENCE))
        stamp = now_iso()
        instance = draft.evolve(id=instance_id, token=secrets.token_urlsafe(32), created=stamp, updated=stamp)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.instance(instance_id), instance.dumps())
            pipe.sadd(keys.user_instances(instance.owner), instance_id)
            pipe.sadd(keys.store_instances(instance.store_id), instance_id)
            _schedule(pipe, None, instance, resume=False, disabled=False)
            await pipe.execute()
        return instance

    async def by_token(self, instance_id: int, token: str) -> Instance | None:
        """The instance if `token` is its token (constant-time compare), else None."""
        record = await self.redis.get(keys.instance(instance_id))
        if record is None:
            return None
        instance = Instance.loads(record)
        return instance if hmac.compare_digest(instance.token.encode(), token.encode()) else None

    async def polling_states(self, instances: Sequence[Instance]) -> dict[int, dict[str, str]]:
        """The poller's state (workers/poll_store.py) of each polling instance."""
        polling = [i.id for i in instances if i.vendor == "polling"]
        if not polling:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for instance_id in polling:
                pipe.hgetall(keys.poll_state(instance_id))
            found = await pipe.execute()
        return {i: {k.decode(): v.decode() for k, v in state.items()} for i, state in zip(polling, found, strict=True)}

    async def delivery_states(self, instances: Sequence[Instance]) -> dict[int, dict[str, str]]:
        """Pause and drain (workers/pausing.py): each instance's state, buffered items and next probe."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for instance in instances:
                pipe.hgetall(keys.delivery_state(instance.id))
                pipe.llen(keys.delivery_buffer(instance.id))
                pipe.zscore(keys.DELIVERY_DUE, instance.id)
            found = await pipe.execute()
        states = {}
        for n, instance in enumerate(instances):
            state, buffered, due = found[3 * n : 3 * n + 3]
            view = {k.decode(): v.decode() for k, v in state.items()}
            view["buffered"] = str(buffered)
            if due is not None:
                view["due"] = str(int(due))
            states[instance.id] = view
        return states

    async def pause(self, instance_id: int, reason: str) -> None:
        """Pause deliveries until resumed by hand; new events are buffered. An existing pause stays as it is."""
        await self._pause(keys=[keys.delivery_state(instance_id), keys.DELIVERY_DUE, keys.DELIVERY_PAUSED],
                          args=[now_ms(), reason, instance_id, "1"])  # fmt: skip

    async def resume(self, instance_id: int) -> None:
        """Drain a paused instance's buffer (workers/drain.py); no-op when it is not paused."""
        state = [keys.delivery_state(instance_id), keys.DELIVERY_DUE, keys.DELIVERY_PAUSED]
        await self._resume(keys=state, args=[now_ms(), instance_id])

    async def polling_disabled(self, owner: str) -> builtins.list[Instance]:
        """The owner's instances whose polling was switched off after failures."""
        disabled = {int(raw) for raw in await self.redis.zrange(keys.POLL_DISABLED, 0, -1)}  # type: ignore[arg-type]
        mine = {int(raw) for raw in await self.redis.smembers(keys.user_instances(owner))}
        ids = sorted(disabled & mine)
        if not ids:
            return []
        records = await self.redis.mget([keys.instance(i) for i in ids])
        return [Instance.loads(record) for record in records if record is not None]

    async def change(
        self, instance_id: int, owner: str, edit: Callable[[Instance], Instance], *, resume: bool = False
    ) -> Instance:
        """Apply `edit` to the stored instance atomically. `edit` may raise to abort.

        `resume` (the request enabled events) also clears a polling stop after failures.
        Raises NotFound, or Conflict when the instance changed while we worked.
        """
        key = keys.instance(instance_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                # The disabled index too: a round may switch polling off while this request works.
                await pipe.watch(key, keys.POLL_DISABLED)
                record = await pipe.get(key)
                if record is None or Instance.loads(record).owner != owner:
                    raise NotFound(f"instance {instance_id} not found")
                before = Instance.loads(record)
                after = edit(before).evolve(id=before.id, owner=before.owner, updated=now_iso())
                disabled = bool(await pipe.zscore(keys.POLL_DISABLED, instance_id))
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, after.dumps())
                if after.store_id != before.store_id:
                    pipe.srem(keys.store_instances(before.store_id), instance_id)
                    pipe.sadd(keys.store_instances(after.store_id), instance_id)
                _schedule(pipe, before, after, resume=resume, disabled=disabled)
                await pipe.execute()
            except WatchError:
                raise Conflict(f"instance {instance_id} was changed by another request; try again") from None
        return after

    async def delete(self, instance_id: int, owner: str) -> None:
        instance = await self.owned(instance_id, owner)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.instance(instance_id))
            pipe.srem(keys.user_instances(owner), instance_id)
            pipe.srem(keys.store_instances(instance.store_id), instance_id)
            pipe.delete(keys.instance_deliveries(instance_id))  # its records expire with the retention
            pipe.delete(keys.delivery_state(instance_id), keys.delivery_buffer(instance_id))
            pipe.zrem(keys.DELIVERY_DUE, instance_id)
            pipe.srem(keys.DELIVERY_PAUSED, instance_id)
            _schedule(pipe, instance, None, resume=False, disabled=False)
            await pipe.execute()


def _schedule(
    pipe: aioredis.client.Pipeline, before: Instance | None, after: Instance | None, *, resume: bool, disabled: bool
) -> None:
    """Keep the polling schedule (workers/poll_store.py) in step with an instance write."""
    instance_id = (after or before).id  # type: ignore[union-attr]
    state = keys.poll_state(instance_id)
    if after is None:
        pipe.zrem(keys.POLL_DUE, instance_id)
        pipe.zrem(keys.POLL_DISABLED, instance_id)
        pipe.delete(state)
        return
    if not after.polls:
        pipe.zrem(keys.POLL_DUE, instance_id)
        return
    now = time.time()
    if before is None or not before.polls or before.store_id != after.store_id:
        # Polling starts now (creation, a switch to polling, another store), not where an earlier
        # spell stopped: events were off in between, so that gap is not the subscriber's.
        pipe.delete(state)
        pipe.zrem(keys.POLL_DISABLED, instance_id)
        pipe.hset(state, "since", str(int(now)))
        pipe.zadd(keys.POLL_DUE, {str(instance_id): now})
    elif resume and disabled:
        # Stopped after failures while events stayed on: resume from the cursors, filling the gap.
        pipe.hdel(state, "disabled_reason", "disabled_at", "failures", "denied")
        pipe.zrem(keys.POLL_DISABLED, instance_id)
        pipe.zadd(keys.POLL_DUE, {str(instance_id): now})
