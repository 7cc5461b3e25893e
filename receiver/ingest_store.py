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

Concurrent accepts share one script call (receiver/accept_batch.py), which checks
each event's fingerprint and answers each event on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from receiver import accept_batch
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


class IngestStore:
    def __init__(self, connection: aioredis.Redis, dedup_ttl: int, cache_stores: int = CACHE_STORES) -> None:
        self._accept = connection.register_script(_ACCEPT)
        self._routed = accept_batch.AcceptBatcher(connection, dedup_ttl)
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
