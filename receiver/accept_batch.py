"""The accept batch: concurrent accepts go to Redis together, as one script call (group commit).

Calls that arrive while one batch is on its way to Redis go together in the next one. Each
call still gets its own reply, and Redis sends it only after the AOF fsync, so "200 only
once durable" holds per event, while the client's per-call cost and Redis's (a command
dispatch, a store's fingerprint) are paid once per batch, not once per event.

Being one script, a call is one entry in the AOF: its writes all happen or none do, so a
crash can never leave an event marked seen but not queued (which would make Ecwid's retry
look like a duplicate). A refused write (out of memory, too few replicas) fails the script
at its first write, before anything is written, and every event of the call hears it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workers import keys

# One call accepts a whole batch. KEYS: the inbox, then for each event the store's index and
# the seen marker. ARGV: the instance key prefix, the dedup TTL, then for each event the
# fingerprint it was routed with and the item ("" to check routing only). A store's fingerprint
# is computed once per call: nothing the script writes can change it. Returns one reply per event.
SCRIPT = """
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

_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA-1)

# How long a batch may wait for Redis when the client sets no socket_timeout.
SOCKET_SECONDS = 1.0

# A script call carries at most this many events or bytes of items; a bigger batch is split
# into several calls, still sent in one write. Redis runs nothing else while a script runs.
CALL_EVENTS = 256
CALL_BYTES = 4 * 1024 * 1024

Call = tuple[str, str, str, bytes, "asyncio.Future[Any]"]  # index, seen, fingerprint, item, reply


class AcceptBatcher:
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

    def __init__(self, connection: aioredis.Redis, dedup_ttl: int) -> None:
        self._connection = connection
        # What every event of a call shares (SCRIPT's KEYS[1], ARGV[1] and ARGV[2]).
        self._shared_keys: list[object] = [keys.INBOX]
        self._shared_args: list[object] = [keys.PREFIX + "instance:", dedup_ttl]
        self._pending: list[Call] = []
        self._running = False
        self._wire: AbstractConnection | None = None
        self._timeout = connection.connection_pool.connection_kwargs.get("socket_timeout") or SOCKET_SECONDS

    async def __call__(self, index: str, seen: str, fingerprint: str, item: bytes) -> Any:
        """This event's reply; raises what Redis raised for its script call or for the whole batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((index, seen, fingerprint, item, future))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._send(split(batch))
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
            await self._connection.script_load(SCRIPT)  # Redis restarted or flushed its scripts
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
        names = [*self._shared_keys]
        args = [*self._shared_args]
        for index, seen, fingerprint, item, _ in call:
            names += (index, seen)
            args += (fingerprint, item)
        # hiredis' stub types the command as a 1-tuple; it takes any number of arguments.
        return pack_command(("EVALSHA", _SHA, len(names), *names, *args))  # type: ignore[arg-type,no-any-return]


def split(batch: list[Call]) -> list[list[Call]]:
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
