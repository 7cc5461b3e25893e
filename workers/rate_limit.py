"""A request budget per Ecwid API token, shared by every process through Redis.

Ecwid allows 600 requests per minute per token and answers 429 beyond that
(ecwid.md §5). We spend at most `PER_MINUTE` (half of that, so apps that use the
same token for their own calls keep room) with a small burst, using the generic
cell rate algorithm: one Redis key per token holds the "theoretical arrival
time" of the next request. Redis's own clock is used, so process clocks do not
matter. A 429 pushes that time past `Retry-After`, which pauses every process
using the token, not only the one that was told.
"""

from __future__ import annotations

import hashlib
import time

import redis

from workers import keys

PER_MINUTE = 300
BURST = 20

# Returns 0 and books a slot, or the milliseconds to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - burst - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat + interval, 'PX', tat + interval - now + 1000)
return 0
"""

# Nobody may use the token for ARGV[1] milliseconds from now.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local burst = tonumber(ARGV[2])
local resume = now + tonumber(ARGV[1]) + burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < resume then redis.call('SET', KEYS[1], resume, 'PX', resume - now + 1000) end
return resume - burst - now
"""


class BudgetExhausted(Exception):
    """The token's budget has no slot before the caller's deadline."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"Ecwid API budget for this token is spent; next slot in {wait_seconds:.1f} s")
        self.wait_seconds = wait_seconds


def token_key(token: str) -> str:
    """The Redis key for a token's budget: a hash, so the token itself is never stored."""
    return keys.ecwid_token(hashlib.sha256(token.encode()).hexdigest()[:24])


class TokenBudget:
    def __init__(self, connection: redis.Redis, per_minute: int = PER_MINUTE, burst: int = BURST) -> None:
        self._acquire = connection.register_script(_ACQUIRE)
        self._pause = connection.register_script(_PAUSE)
        self.interval_ms = 60_000 // per_minute
        self.burst_ms = self.interval_ms * burst

    def acquire(self, token: str, deadline: float) -> None:
        """Wait (sleeping) until the token may make one request; books it.

        Raises BudgetExhausted if that would be after `deadline` (a `time.monotonic()` value).
        """
        key = token_key(token)
        while True:
            wait_ms = int(self._acquire(keys=[key], args=[self.interval_ms, self.burst_ms]))
            if wait_ms <= 0:
                return
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise BudgetExhausted(wait_ms / 1000)
            time.sleep(wait_ms / 1000)

    def pause(self, token: str, seconds: float) -> None:
        """Hold every request with this token for `seconds` (Ecwid's Retry-After)."""
        self._pause(keys=[token_key(token)], args=[int(seconds * 1000), self.burst_ms])
