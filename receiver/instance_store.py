"""Instances in Redis: create, read, change and delete, keeping the indexes in step.

Every write is one MULTI/EXEC transaction over the record and its index sets, so
a failed request changes nothing. Changes use optimistic locking (WATCH): a
concurrent change to the same instance makes the later one fail with 409.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from receiver.errors import Conflict, NotFound
from workers import keys
from workers.instances import Instance, now_iso

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
            await pipe.execute()
        return instance

    async def change(self, instance_id: int, owner: str, edit: Callable[[Instance], Instance]) -> Instance:
        """Apply `edit` to the stored instance atomically. `edit` may raise to abort.

        Raises NotFound, or Conflict when the instance changed while we worked.
        """
        key = keys.instance(instance_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                record = await pipe.get(key)
                if record is None or Instance.loads(record).owner != owner:
                    raise NotFound(f"instance {instance_id} not found")
                before = Instance.loads(record)
                after = edit(before).evolve(id=before.id, owner=before.owner, updated=now_iso())
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, after.dumps())
                if after.store_id != before.store_id:
                    pipe.srem(keys.store_instances(before.store_id), instance_id)
                    pipe.sadd(keys.store_instances(after.store_id), instance_id)
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
            await pipe.execute()
