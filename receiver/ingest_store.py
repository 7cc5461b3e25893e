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
way to Redis go together in the next script call (group commit). Each request still
gets its own reply, and Redis sends it only after the AOF fsync, so "200 only once
durable" holds per event, while the client's per-call cost and Redis's (a command
dispatch, a store's fingerprint) are paid once per batch, not once per event.

Being one script, a batch is one entry in the AOF: its writes all happen or none do,
so a crash can never leave an event marked seen but not queued (which would make
Ecwid's retry look like a duplicate). A refused write (out of memory, too few
replicas) fails the script at its first write, before anything is written, and
every event of the call is answered 503.
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

# One call accepts a whole batch. KEYS: the inbox, then for each event the store's index and
# the seen marker. ARGV: the instance key prefix, the dedup TTL, then for each event the
# fingerprint it was routed with and the item ("" to check routing only). A store's fingerprint
# is computed once per call: nothing the script writes can change it. Returns one reply per event.
_ROUTED_ACCEPT = """
local prefix, ttl = ARGV[1], ARGV[2]
local stores = {}
local replies = {}
for n = 1, (#KEYS - 1) / 2 do
  local index, seen = KEYS[2 * n], KEYS[2 * n + 1]
  local routed, item = ARGV[2 * n + 1], ARGV[2 * n + 2]
  local store = stores[index]
  if not store then
    local ids = redis.call('SMEMBERS', index)
    table.sort(ids)
    local records = {}
    for _, id in ipairs(ids) do
      local record = redis.call('GET', prefix .. id)
      if record then table.insert(records, record) end
    end
    store = {redis.sha1hex(table.concat(records, '\\n')), records}
    stores[index] = store
  end
  if store[1] ~= routed then
    replies[n] = {'stale', store[1], store[2]}
  elseif item == '' then
    replies[n] = {'fresh'}
  elseif redis.call('SET', seen, '1', 'NX', 'EX', ttl) then
    redis.call('LPUSH', KEYS[1], item)
    replies[n] = {'queued'}
  else
    replies[n] = {'duplicate'}
  end
end
return replies
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


# A script call carries at most this many events or bytes of items; a bigger batch is split
# into several calls, still sent in one write. Redis runs nothing else while a script runs.
CALL_EVENTS = 256
CALL_BYTES = 4 * 1024 * 1024

Call = tuple[str, str, str, bytes, "asyncio.Future[Any]"]  # index, seen, fingerprint, item, reply


class Batcher:
    """Runs the accept script once for many concurrent callers (group commit).

    At most one batch is in flight; calls made meanwhile wait for the next one, so a
    lone call costs one round trip and a busy receiver sends fewer, fuller batches.
    A batch is one script call (or a few, see CALL_EVENTS), so Redis dispatches one
    command and computes each store's fingerprint once for all the batch's events.

    The batch bypasses redis-py's pipeline machinery (pure-Python packing, a pool checkout,
    a retry wrapper and a timeout context per reply): hiredis packs the calls in C, they go
    out in one write on a connection the batcher keeps for its lifetime, and one deadline
    covers reading all the replies.
    """

    def __init__(
        self, connection: aioredis.Redis, script: str, shared_keys: list[str], shared_args: list[object]
    ) -> None:
        self._connection = connection
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)
        self._shared_keys = shared_keys
        self._shared_args = shared_args
        self._pending: list[Call] = []
        self._running = False
        self._wire: AbstractConnection | None = None
        self._timeout = connection.connection_pool.connection_kwargs.get("socket_timeout") or SOCKET_SECONDS

    async def __call__(self, index: str, seen: str, fingerprint: str, item: bytes) -> Any:
        """This event's reply; raises what Redis raised for its script call or for the whole batch."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((index, seen, fingerprint, item, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._send(_calls(batch))
                except BaseException as exc:  # Redis down, timeout, cancelled: every caller hears it
                    for call in batch:
                        if not call[4].done():
                            call[4].set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            self._running = False

    async def _send(self, calls: list[list[Call]]) -> None:
        replies = await self._pipeline(calls)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            await self._connection.script_load(self._script)  # Redis restarted or flushed its scripts
            replies = await self._pipeline(calls)
        for call, reply in zip(calls, replies, strict=True):
            for (*_, future), answer in zip(
                call, reply if isinstance(reply, list) else [reply] * len(call), strict=True
            ):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _pipeline(self, calls: list[list[Call]]) -> list[Any]:
        if self._wire is None:
            self._wire = await self._connection.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            # The batch has one deadline (below); a per-write timeout as well would run every
            # write in a task of its own (asyncio.wait_for), a tenth of a small batch's cost.
            self._wire.socket_timeout = None
        wire = self._wire
        packed = [self._pack(call) for call in calls]
        replies: list[Any] = []
        try:
            # One deadline for the whole batch, as redis-py's socket_timeout gives one call.
            async with asyncio.timeout(self._timeout):
                await wire.send_packed_command(packed)
                for _ in calls:
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

    def _pack(self, call: list[Call]) -> bytes:
        keys: list[object] = [*self._shared_keys]
        args: list[object] = [*self._shared_args]
        for index, seen, fingerprint, item, _ in call:
            keys += (index, seen)
            args += (fingerprint, item)
        # hiredis' stub types the command as a 1-tuple; it takes any number of arguments.
        return pack_command(("EVALSHA", self._sha, len(keys), *keys, *args))  # type: ignore[arg-type,no-any-return]


def _calls(batch: list[Call]) -> list[list[Call]]:
    """`batch` in script calls of at most CALL_EVENTS events and, unless one item is bigger, CALL_BYTES."""
    calls: list[list[Call]] = [[]]
    size = 0
    for call in batch:
        if calls[-1] and (len(calls[-1]) == CALL_EVENTS or size + len(call[3]) > CALL_BYTES):
            calls.append([])
            size = 0
        calls[-1].append(call)
        size += len(call[3])
    return calls


class IngestStore:
    def __init__(self, connection: aioredis.Redis, dedup_ttl: int, cache_stores: int = CACHE_STORES) -> None:
        self._accept = connection.register_script(_ACCEPT)
        self._routed = Batcher(connection, _ROUTED_ACCEPT, [keys.INBOX], [keys.PREFIX + "instance:", dedup_ttl])
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
            keys.store_instances(store_id), seen, fingerprint, item.dumps() if item is not None else b""
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
