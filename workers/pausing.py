"""Pause and drain: an instance whose endpoint keeps failing stops receiving, buffers, and resumes.

Disabling an endpoint and dropping its events (what most gateways do) loses data
the subscriber needed. Instead, per instance:

* `relay:instance:{id}:delivery` (a hash) holds the state: absent or empty when
  deliveries flow, `paused` or `draining`; `since`, `reason`, `failures` (failed
  attempts in a row), `manual` (resumed only by hand: a pause by PATCH, or 410
  Gone), `probes` (failed probes in a row) and `step` (of the drain).
* `relay:instance:{id}:buffer` (a list) holds the inbox items of the deliveries
  that arrived, or came up for a retry, while the instance was paused, oldest first.
* `relay:pause:instances` (a set) holds the ids of paused and draining instances.
* `relay:pause:due` (a sorted set) says when each paused or draining instance
  needs its next probe or drain step. Every dispatcher looks at it each second
  (`claim_due`) and enqueues a `tick` job for what is due, with a lease, so a
  worker that dies mid-tick only delays the instance.

After `pause.threshold` retryable failures in a row, deliveries pause. A probe
sends the oldest buffered notification again, with backoff (5 s doubling to
1 h); a failed probe sends its item to the back, so one event the endpoint
chokes on cannot block the rest. A 2xx, or a deliberate rejection (a 4xx other
than 408, 410, 425, 429), shows the endpoint is up: the drain moves the buffer back into the queue at a
ramped rate (10 items, then 20, 40, ... up to 640 a second), ahead of newer
events, which join the buffer's tail until it is empty. Every state change is
one Lua script, so concurrent deliveries, probes and drains never lose an item.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from workers import keys, lua

PROBE_FIRST = 5  # seconds from pausing to the first probe
PROBE_MAX = 3600
DRAIN_FIRST = 10  # items moved back in the drain's first step; doubles each second
DRAIN_MAX = 640
LEASE_MS = 90_000  # a claimed tick not finished by then is claimed again

# KEYS: due, then the state and buffer of each item's instance. ARGV: now ms, first probe ms, then item,
# drained ("1" for jobs the drain created) and instance id of each item. Returns one flag per item, 1 if it was
# parked: deliver when not paused and not behind a draining buffer. Each instance's state is read once.
_GATE = """
local states, parked = {}, {}
for i = 1, (#KEYS - 1) / 2 do
  local state, buffer, item, drained = KEYS[2 * i], KEYS[2 * i + 1], ARGV[3 * i], ARGV[3 * i + 1]
  local s = states[state]
  if not s then
    s = redis.call('HMGET', state, 'state', 'manual', 'since')
    states[state] = s
  end
  if not s[1] or (s[1] == 'draining' and drained == '1') then
    parked[i] = 0
  else
    parked[i] = 1
    if redis.call('RPUSH', buffer, item) == 1 and s[1] == 'paused' and not s[2] then
      -- The first item to probe with, after a wait for one: probe now, but never sooner than
      -- the first probe after the pause.
      local at = math.max(tonumber(ARGV[1]), tonumber(s[3] or '0') + tonumber(ARGV[2]))
      redis.call('ZADD', KEYS[1], 'LT', at, ARGV[3 * i + 2])
    end
  end
end
return parked
"""

# KEYS: state, due, paused set. ARGV: threshold, now ms, reason, instance id, first probe ms.
# Returns 0: still flowing; 1: this failure paused the instance; 2: it was paused already.
_FAILED = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if redis.call('HGET', KEYS[1], 'state') == 'paused' then return 2 end
if failures < tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'paused', 'since', ARGV[2], 'reason', ARGV[3], 'probes', 0)
redis.call('HDEL', KEYS[1], 'manual', 'step')
redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[5]), ARGV[4])
redis.call('SADD', KEYS[3], ARGV[4])
return 1
"""

# KEYS: state, due, paused set. ARGV: now ms, reason, instance id, keep ("1": an existing pause keeps
# its `since`).
# A pause only a person ends (PATCH, or 410): no probes.
PAUSE_SCRIPT = """
if ARGV[4] == '1' and redis.call('HGET', KEYS[1], 'state') == 'paused' then
  redis.call('HSET', KEYS[1], 'reason', ARGV[2], 'manual', 1)
else
  redis.call('HSET', KEYS[1], 'state', 'paused', 'since', ARGV[1], 'reason', ARGV[2], 'manual', 1, 'probes', 0)
  redis.call('HDEL', KEYS[1], 'step')
end
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
"""

# KEYS: state, due, paused set. ARGV: now ms, instance id. Start draining; returns 0 if it was not paused.
RESUME_SCRIPT = """
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'draining', 'since', ARGV[1], 'step', 0, 'probes', 0)
redis.call('HDEL', KEYS[1], 'failures', 'manual', 'reason')
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# KEYS: state, buffer, due. ARGV: probed item, now ms, instance id, drain ("0": only drop the item).
# After a probe that reached the endpoint: take the probed item off the buffer's head (unless it
# moved meanwhile), then drain.
_PROBE_REACHED = """
if redis.call('LINDEX', KEYS[2], 0) == ARGV[1] then redis.call('LPOP', KEYS[2]) end
if ARGV[4] == '0' or redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'draining', 'since', ARGV[2], 'step', 0, 'probes', 0)
redis.call('HDEL', KEYS[1], 'failures', 'reason')
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1
"""

# KEYS: state, buffer, due, paused set. ARGV: items moved, now ms, instance id. Run in the drain's MULTI,
# after the moved items' jobs: trim them, and end the drain when nothing is left.
_DRAINED = """
redis.call('LTRIM', KEYS[2], tonumber(ARGV[1]), -1)
if redis.call('HGET', KEYS[1], 'state') ~= 'draining' then return 0 end
if redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('SREM', KEYS[4], ARGV[3])
  return 1
end
redis.call('HINCRBY', KEYS[1], 'step', 1)
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) + 1000, ARGV[3])
return 2
"""

# KEYS: due. ARGV: now ms, lease ms, at most. Claim what is due, pushing each out by the lease; the
# lease's score identifies the claim, so a tick that comes late finds the schedule moved on.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id) end
return due
"""

# KEYS: due. ARGV: instance id, lease. True (and the claim is taken) if the schedule still holds this lease.
_HOLDS = """
return tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '-1') == tonumber(ARGV[2]) and 1 or 0
"""

# KEYS: state, buffer, due. ARGV: probed item, instance id, next probe ms. After a failed probe: the
# probed item goes to the back, so one event the endpoint keeps refusing cannot block the others.
_PROBE_FAILED = """
if redis.call('LINDEX', KEYS[2], 0) == ARGV[1] then redis.call('LMOVE', KEYS[2], KEYS[2], 'LEFT', 'RIGHT') end
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
redis.call('HINCRBY', KEYS[1], 'probes', 1)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return 1
"""

# KEYS: state, due. ARGV: instance id. A tick found nothing to do: unschedule it, unless a pause that
# is probed, or a drain, was set up meanwhile.
_IDLE = """
local s = redis.call('HMGET', KEYS[1], 'state', 'manual')
if s[1] == 'draining' or (s[1] == 'paused' and not s[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def probe_delay(failed_probes: int) -> int:
    """Seconds before the next probe after `failed_probes` failed ones: 5 s doubling, at most 1 h."""
    return int(min(PROBE_FIRST * 2 ** min(failed_probes, 20), PROBE_MAX))


def drain_size(step: int) -> int:
    """Items the drain moves back into the queue at `step` (0, 1, ...): a ramp, not a flood."""
    return int(min(DRAIN_FIRST * 2 ** min(step, 20), DRAIN_MAX))


@dataclass(frozen=True)
class Gate:
    parked: bool  # the item went to the buffer: do not deliver it now


# A success ends the run of failures of each instance whose state is in KEYS.
_SUCCEEDED = "for _, state in ipairs(KEYS) do redis.call('HDEL', state, 'failures') end return 1"


class Pauses:
    """The pause-and-drain state of instances, over a synchronous Redis client (worker side)."""

    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._gate = connection.register_script(_GATE)
        self._failed = connection.register_script(_FAILED)
        self._pause = connection.register_script(PAUSE_SCRIPT)
        self._resume = connection.register_script(RESUME_SCRIPT)
        self._reached = connection.register_script(_PROBE_REACHED)
        self._drained = connection.register_script(_DRAINED)
        self._succeeded = connection.register_script(_SUCCEEDED)
        self._claim = connection.register_script(_CLAIM)
        self._holds = connection.register_script(_HOLDS)
        self._probe_failed = connection.register_script(_PROBE_FAILED)
        self._idle = connection.register_script(_IDLE)

    def gate(self, instance_id: int, item: str, *, drained: bool = False) -> Gate:
        """Park `item` in the buffer if the instance is paused (or draining and `item` is new)."""
        return Gate(self.gate_many([(instance_id, item)], drained=drained)[0])

    def gate_many(self, items: list[tuple[int, str]], *, drained: bool = False) -> list[bool]:
        """`gate` for several (instance id, item) in one round trip, in order: True where parked.
        A batch (workers/batches.py) gates its events together before it sends any."""
        if not items:
            return []
        names: list[str] = [keys.DELIVERY_DUE]
        args: list[str | int] = [now_ms(), PROBE_FIRST * 1000]
        for instance_id, item in items:
            names += [keys.delivery_state(instance_id), keys.delivery_buffer(instance_id)]
            args += [item, "1" if drained else "0", instance_id]
        return [bool(flag) for flag in self._gate(keys=names, args=args)]

    def failed(self, instance_id: int, threshold: int, reason: str) -> int:
        """Count a failed attempt: 0 still flowing, 1 paused by this failure, 2 paused before."""
        reason = f"{threshold} failed attempts in a row; last: {reason}"
        return int(self._failed(keys=self._keys(instance_id), args=[threshold, now_ms(), reason, instance_id,
                                                                    PROBE_FIRST * 1000]))  # fmt: skip

    def succeeded(self, instance_id: int) -> None:
        """A 2xx ends a run of failures."""
        self.redis.hdel(keys.delivery_state(instance_id), "failures")

    def succeeded_many(self, instance_ids: list[int], pipe: redis.client.Pipeline) -> None:
        """`succeeded` for each of `instance_ids`, in one command queued in `pipe` (a batch's events
        can go to as many instances as it has events)."""
        if instance_ids:
            lua.call(self._succeeded, [keys.delivery_state(i) for i in instance_ids], [], pipe)

    def pause(self, instance_id: int, reason: str) -> None:
        """Pause until resumed by hand (`resume`): no probes."""
        self._pause(keys=self._keys(instance_id), args=[now_ms(), reason, instance_id, "0"])

    def resume(self, instance_id: int) -> bool:
        """Drain a paused instance now. False if it was not paused."""
        return bool(self._resume(keys=self._keys(instance_id), args=[now_ms(), instance_id]))

    def state(self, instance_id: int) -> dict[str, str]:
        raw = self.redis.hgetall(keys.delivery_state(instance_id))
        return {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]

    def head(self, instance_id: int) -> str | None:
        """The oldest buffered item: what a probe sends."""
        raw = self.redis.lindex(keys.delivery_buffer(instance_id), 0)
        return None if raw is None else raw.decode()  # type: ignore[union-attr]

    def probe_reached(self, instance_id: int, item: str) -> None:
        """The endpoint answered the probe for `item`: drop it from the buffer and start draining."""
        self._reached(keys=self._keys(instance_id, buffer=True), args=[item, now_ms(), instance_id, "1"])

    def probe_failed(self, instance_id: int, item: str) -> int:
        """Move the probed `item` to the buffer's back and schedule the next probe with backoff.
        Returns the delay in seconds."""
        delay = probe_delay(int(self.state(instance_id).get("probes", "0")) + 1)
        self._probe_failed(keys=self._keys(instance_id, buffer=True), args=[item, instance_id,
                                                                            now_ms() + delay * 1000])  # fmt: skip
        return delay

    def holds(self, instance_id: int, lease: int) -> bool:
        """True while `lease` (from `claim_due`) is still the instance's schedule: not a late tick."""
        return bool(self._holds(keys=[keys.DELIVERY_DUE], args=[instance_id, lease]))

    def idle(self, instance_id: int) -> None:
        """Nothing to do for the instance: unschedule it, unless it needs probes or a drain by now."""
        self._idle(keys=self._keys(instance_id), args=[instance_id])

    def drop_head(self, instance_id: int, item: str) -> None:
        """Take `item` off the buffer's head (it needs no delivery), if it is still there."""
        self._reached(keys=self._keys(instance_id, buffer=True), args=[item, now_ms(), instance_id, "0"])

    def wait(self, instance_id: int, seconds: int) -> None:
        """Look at the instance again in `seconds` (a probe with nothing buffered to send)."""
        self.redis.zadd(keys.DELIVERY_DUE, {str(instance_id): now_ms() + seconds * 1000})

    def buffered(self, instance_id: int, count: int) -> list[str]:
        raw = self.redis.lrange(keys.delivery_buffer(instance_id), 0, count - 1)
        return [item.decode() for item in raw]  # type: ignore[union-attr]

    def drained(self, pipe: redis.client.Pipeline, instance_id: int, moved: int) -> None:
        """In the drain's MULTI: take `moved` items off the buffer; finish or schedule the next step."""
        lua.call(self._drained, self._keys(instance_id, buffer=True), [moved, now_ms(), instance_id], pipe)

    def claim_due(self, at_most: int = 50) -> tuple[list[int], int]:
        """Instances whose probe or drain step is due, each leased until the returned lease (ms)."""
        now = now_ms()
        due = self._claim(keys=[keys.DELIVERY_DUE], args=[now, LEASE_MS, at_most])
        return [int(raw) for raw in due], now + LEASE_MS

    def forget(self, instance_id: int) -> None:
        """The instance is gone: drop its state, buffer and schedule."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.delivery_state(instance_id), keys.delivery_buffer(instance_id))
            pipe.zrem(keys.DELIVERY_DUE, instance_id)
            pipe.srem(keys.DELIVERY_PAUSED, instance_id)
            pipe.execute()

    @staticmethod
    def _keys(instance_id: int, *, buffer: bool = False) -> list[str]:
        """The keys the scripts take: state, [buffer,] due, paused set (scripts ignore the ones they
        do not need)."""
        state = keys.delivery_state(instance_id)
        if buffer:
            return [state, keys.delivery_buffer(instance_id), keys.DELIVERY_DUE, keys.DELIVERY_PAUSED]
        return [state, keys.DELIVERY_DUE, keys.DELIVERY_PAUSED]
