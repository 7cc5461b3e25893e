"""Accepting an event into Redis: deduplicate and enqueue in one atomic step.

One Lua script marks the event as seen (SET NX EX) and appends it to the inbox
(LPUSH) only when it was not seen before. Being one script, it is one entry in
the AOF: either both happen or neither does, so a crash can never leave an event
marked seen but not queued (which would make Ecwid's retry look like a duplicate).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from workers import keys
from workers.inbox import InboxItem

_ACCEPT = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class IngestStore:
    def __init__(self, connection: aioredis.Redis, dedup_ttl: int) -> None:
        self._accept = connection.register_script(_ACCEPT)
        self._dedup_ttl = dedup_ttl

    async def accept(self, item: InboxItem, route: str = "") -> bool:
        """Queue `item` unless its event was accepted before (on this `route`). True when queued.

        Raises redis errors when Redis is unreachable; then nothing was stored.
        """
        queued = await self._accept(
            keys=[keys.seen(item.event_id, route), keys.INBOX], args=[self._dedup_ttl, item.dumps()]
        )
        return bool(queued)
