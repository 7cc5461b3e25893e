"""Accepting an event into Redis: route, deduplicate and enqueue in one atomic step.

Routing needs the store's instances (their secrets verify the signature), so the
receiver keeps them in memory, per store, with a fingerprint: the SHA-1 of the
store's instance records as Redis holds them. Accepting a webhook is one Lua
script that recomputes that fingerprint and, only if it still matches the one
the event was routed with, marks the event as seen (SET NX EX) and appends it to
the inbox (LPUSH). If any record or the store's index changed, the script writes
nothing and returns the current records; the receiver routes again with them.
So the cache never routes on stale data, needs no invalidation messages, and a
warm store costs one round trip per event instead of two.

Concurrent requests share round trips: calls that arrive while one batch is on its
way to Redis go together in the next pipeline (group commit). Each request still
gets its own script's reply, and Redis sends replies only after the AOF fsync, so
"200 only once durable" holds per event, while the client's per-call cost (most
of an ingest's CPU time) is paid once per batch.

Being one script, the accept is one entry in the AOF: either both writes happen or
neither does, so a crash can never leave an event marked seen but not queued
(which would make Ecwid's retry look like a duplicate).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workers import keys
from workers.inbox import InboxItem
from workers.instances import Instance

_ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS: the store's index, the seen marker, the inbox. ARGV: the instance key prefix, the
# fingerprint the event was routed with, the dedup TTL, the item ("" to check routing only).
_ROUTED_ACCEPT = """
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
local records = {}
for _, id in ipairs(ids) do
  local record = redis.call('GET', ARGV[1] .. id)
  if record then table.insert(records, record) end
end
local fingerprint = redis.sha1hex(table.concat(records, '\\n'))
if fingerprint ~= ARGV[2] then
  return {'stale', fingerprint, records}
end
if ARGV[4] == '' then return {'fresh'} end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then
  redis.call('LPUSH', KEYS[3], ARGV[4])
  return {'queued'}
end
return {'duplicate'}
"""

# How long a batch may wait for Redis when the client sets no socket_timeout.
SOCKET_SECONDS = 1.0

# Enough for every store a busy receiver hears from; the oldest entry goes first.
CACHE_STORES = 50_000


@dataclass(frozen=True, slots=True)
class Subscriber:
    """What routing needs of an instance."""

    id: int
    oauth_secret: str | None
    subscribed: bool


@dataclass(frozen=True, slots=True)
class StoreRoute:
    """A store's instances as of `fingerprint`, and whether they came from the cache."""

    fingerprint: str
    instances: tuple[Subscriber, ...]
    cached: bool = False


Outcome = Literal["queued", "duplicate", "fresh"]


class Batcher:
    """Runs one Lua script for many concurrent callers, one pipelined write per batch.

    At most one batch is in flight; calls made meanwhile wait for the next one, so a
    lone call costs one round trip and a busy receiver sends fewer, fuller batches.

    The batch bypasses redis-py's pipeline machinery (pure-Python packing, a pool checkout,
    a retry wrapper and a timeout context per reply: most of an ingest's Redis cost): hiredis
    packs the commands in C, they go out in one write on a connection the batcher keeps for
    its lifetime, and one deadline covers reading all the replies.
    """

    def __init__(self, connection: aioredis.Redis, script: str) -> None:
        self._connection = connection
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)
        self._pending: list[tuple[list[str], list[object], asyncio.Future[Any]]] = []
        self._running = False
        self._wire: AbstractConnection | None = None
        self._timeout = connection.connection_pool.connection_kwargs.get("socket_timeout") or SOCKET_SECONDS

    async def __call__(self, keys: list[str], args: list[object]) -> Any:
        """The script's reply; raises what Redis raised for this call or for the whole batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._send(batch)
                except BaseException as exc:  # Redis down, timeout, cancelled: every caller hears it
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._running = False

    async def _send(self, batch: list[tuple[list[str], list[object], asyncio.Future[Any]]]) -> None:
        replies = await self._pipeline(batch)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            await self._connection.script_load(self._script)  # Redis restarted or flushed its scripts
            replies = await self._pipeline(batch)
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: list[tuple[list[str], list[object], asyncio.Future[Any]]]) -> list[Any]:
        if self._wire is None:
            self._wire = await self._connection.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            # The batch has one deadline (below); a per-write timeout as well would run every
            # write in a task of its own (asyncio.wait_for), a tenth of a small batch's cost.
            self._wire.socket_timeout = None
        wire = self._wire
        # hiredis' stub types the command as a 1-tuple; it takes any number of arguments.
        packed = [pack_command(("EVALSHA", self._sha, len(keys), *keys, *args)) for keys, args, _ in batch]  # type: ignore[arg-type]
        replies: list[Any] = []
        try:
            # One deadline for the whole batch, as redis-py's socket_timeout gives one call.
            async with asyncio.timeout(self._timeout):
                await wire.send_packed_command(packed)
                for _ in batch:
                    try:
                        replies.append(await wire.read_response(disable_decoding=True, timeout=math.inf))
                    except ResponseError as exc:  # read whole: the replies after it are still in step
                        replies.append(exc)
        except TimeoutError:
            await wire.disconnect(nowait=True)  # replies may still be on their way: never read them as ours
            raise RedisTimeoutError(f"Redis did not answer within {self._timeout} s") from None
        except BaseException:
            await wire.disconnect(nowait=True)
            raise
        return replies


class IngestStore:
    def __init__(self, connection: aioredis.Redis, dedup_ttl: int, cache_stores: int = CACHE_STORES) -> None:
        self._accept = connection.register_script(_ACCEPT)
        self._routed = Batcher(connection, _ROUTED_ACCEPT)
        self._dedup_ttl = dedup_ttl
        self._cache: dict[int, StoreRoute] = {}
        self._cache_stores = cache_stores

    async def accept(self, item: InboxItem, route: str = "") -> bool:
        """Queue `item` unless its event was accepted before (on this `route`). True when queued.

        Raises redis errors when Redis is unreachable; then nothing was stored.
        """
        queued = await self._accept(
            keys=[keys.seen(item.event_id, route), keys.INBOX], args=[self._dedup_ttl, item.dumps()]
        )
        return bool(queued)

    def route(self, store_id: int) -> StoreRoute | None:
        """The cached instances of a store, if any. Use them only through `accept_routed`."""
        return self._cache.get(store_id)

    async def load(self, store_id: int) -> StoreRoute:
        """The store's current instances, from Redis (one round trip); refreshes the cache."""
        outcome = await self._run(store_id, "", "", None)
        assert isinstance(outcome, StoreRoute)
        return outcome

    async def accept_routed(
        self, store_id: int, routed: StoreRoute, item: InboxItem | None, route: str = ""
    ) -> Outcome | StoreRoute:
        """Queue `item` (routed with `routed`) unless its event was accepted before on `route`.

        With `item` None, only checks that `routed` is current ("fresh"). Returns the current
        StoreRoute instead, writing nothing, when the store's instances changed since `routed`.
        Raises redis errors when Redis is unreachable; then nothing was stored.
        """
        seen = keys.seen(item.event_id, route) if item is not None else keys.seen("")
        return await self._run(store_id, routed.fingerprint, seen, item)

    async def _run(self, store_id: int, fingerprint: str, seen: str, item: InboxItem | None) -> Outcome | StoreRoute:
        reply = await self._routed(
            [keys.store_instances(store_id), seen, keys.INBOX],
            [keys.PREFIX + "instance:", fingerprint, self._dedup_ttl, item.dumps() if item is not None else ""],
        )
        verdict = reply[0].decode()
        if verdict != "stale":
            return verdict  # type: ignore[no-any-return]
        current = StoreRoute(reply[1].decode(), tuple(_subscriber(record) for record in reply[2]))
        self._remember(store_id, current)
        return current

    def _remember(self, store_id: int, current: StoreRoute) -> None:
        self._cache.pop(store_id, None)
        if len(self._cache) >= self._cache_stores:
            del self._cache[next(iter(self._cache))]
        self._cache[store_id] = StoreRoute(current.fingerprint, current.instances, cached=True)


def _subscriber(record: bytes) -> Subscriber:
    instance = Instance.loads(record)
    return Subscriber(instance.id, instance.oauth_secret, instance.subscribed)
