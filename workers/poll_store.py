"""The poller's state in Redis: schedule, per-instance state, locks, and the commit of a round.

`relay:poll:due` schedules rounds; `relay:poll:{id}` holds an instance's cursors
(`cursor:{objectType}`, unix seconds), category fingerprints, failure counts and,
once polling was switched off, why. The receiver adds and removes instances from
the schedule as they are configured (receiver/instance_store.py).

`commit` is the one step that makes a round's work visible. In one MULTI/EXEC
(one AOF entry) it queues the notifications, records the change markers and
moves the cursors. A crash before it leaves everything as it was, so the next
round asks Ecwid again from the old cursor: changes are never skipped.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson
import redis

from workers import keys
from workers.changes import MARKER_SLACK, POLL, Change, batches, is_reported, next_marker, was_reported
from workers.inbox import InboxItem
from workers.instances import Instance

# Claims the instances due now: moves each one's due time to now + lease, so another
# planner (a second scheduler, by mistake) cannot claim it again meanwhile.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""

# claim_webhook_change in one round trip: is_reported() and next_marker() of workers/changes.py
# for a webhook source (tests/workers/test_poll_store.py holds the two to the same cases).
_CLAIM_WEBHOOK = """
local marker = redis.call('GET', KEYS[1])
local kind_in, updated = ARGV[1], tonumber(ARGV[2])
if marker then
  local when, kind, who = string.match(marker, '^(%-?%d+) (%S+) (.+)$')
  when = tonumber(when)
  if who == 'poll' then
    if kind_in == 'DELETED' then
      if kind == 'DELETED' then return 0 end
    elseif updated <= when + tonumber(ARGV[4]) then
      return 0
    end
  end
  if updated < when and kind_in ~= 'DELETED' then return 1 end
end
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. kind_in .. ' ' .. ARGV[3], 'EX', ARGV[5])
return 1
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PollStore:
    def __init__(self, connection: redis.Redis) -> None:
        self.redis = connection
        self._claim = connection.register_script(_CLAIM)
        self._release = connection.register_script(_RELEASE)
        self._extend = connection.register_script(_EXTEND)
        self._claim_webhook = connection.register_script(_CLAIM_WEBHOOK)

    # -- schedule and locks --------------------------------------------------------------

    def claim_due(self, now: float, lease: float, limit: int = 500) -> list[int]:
        """Instances whose round is due, each claimed for `lease` seconds. Atomic."""
        ids = self._claim(keys=[keys.POLL_DUE], args=[now, now + lease, limit])
        return [int(_text(i)) for i in ids]

    def reconcile(self) -> int:
        """Put every instance that should poll on the schedule, and take off those that should not.

        The receiver keeps the schedule in step as instances change; this catches instances
        stored before polling existed, or written by an older version. Returns how many were added.
        """
        now = time.time()
        disabled = {int(_text(i)) for i in self.redis.zrange(keys.POLL_DISABLED, 0, -1)}
        added = 0
        for key in self.redis.scan_iter(match=keys.PREFIX + "instance:*", count=500):
            suffix = _text(key).rsplit(":", 1)[1]
            record = self.redis.get(key) if suffix.isdigit() else None
            if record is None:
                continue
            instance = Instance.loads(record)
            if not instance.polls:
                self.redis.zrem(keys.POLL_DUE, instance.id)
            elif instance.id not in disabled:
                self.redis.hsetnx(keys.poll_state(instance.id), "since", str(int(now)))
                added += int(self.redis.zadd(keys.POLL_DUE, {str(instance.id): now}, nx=True) or 0)
        return added

    def acquire(self, instance_id: int, ttl: int) -> str | None:
        """Take the instance's round lock for `ttl` seconds; None if a round is running."""
        token = secrets.token_hex(8)
        return token if self.redis.set(keys.poll_lock(instance_id), token, nx=True, ex=ttl) else None

    def extend(self, instance_id: int, token: str, ttl: int) -> bool:
        """Keep holding the round lock for another `ttl` seconds; False if it was lost."""
        return bool(self._extend(keys=[keys.poll_lock(instance_id)], args=[token, ttl]))

    def release(self, instance_id: int, token: str) -> None:
        self._release(keys=[keys.poll_lock(instance_id)], args=[token])

    def state(self, instance_id: int) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in self.redis.hgetall(keys.poll_state(instance_id)).items()}

    def started(self, instance_id: int, when: float) -> None:
        self.redis.hset(keys.poll_state(instance_id), "last_started", str(int(when)))

    # -- the commit ----------------------------------------------------------------------

    def commit(self, instance: Instance, changes: Sequence[Change], fields: Mapping[str, str], marker_ttl: int) -> int:
        """Queue the changes not forwarded before, record them, and store `fields` (cursors).

        Atomic, and safe against a concurrent webhook delivery touching the same
        markers (WATCH; redis-py retries on conflict). Returns how many changes were queued.
        """
        marker_keys = sorted({keys.change(instance.id, c.object_type, c.object_id) for c in changes})

        def attempt(pipe: redis.client.Pipeline) -> int:
            markers = dict(zip(marker_keys, pipe.mget(marker_keys), strict=True)) if marker_keys else {}
            current = {k: (_text(v) if v is not None else None) for k, v in markers.items()}
            fresh: list[Change] = []
            updates: dict[str, str] = {}
            for change in sorted(changes, key=lambda c: (c.updated, c.event_type == "DELETED")):
                key = keys.change(instance.id, change.object_type, change.object_id)
                if change.dated and is_reported(current[key], change.event_type, change.updated, POLL):
                    continue
                if change.event_type == "CREATED" and was_reported(current[key]):
                    # Reported before, so not new to the subscriber (Ecwid's clock may run ahead of ours).
                    change = replace(change, event_type="UPDATED")
                fresh.append(change)
                marker = next_marker(current[key], change.event_type, change.updated, POLL)
                if marker is not None:
                    current[key] = updates[key] = marker
            pipe.multi()
            for key, marker in updates.items():
                pipe.set(key, marker, ex=marker_ttl)
            items = [notification(instance, batch).dumps() for batch in batches(fresh)]
            if items:
                pipe.lpush(keys.INBOX, *items)
            if fields:
                pipe.hset(keys.poll_state(instance.id), mapping={**fields})  # type: ignore[dict-item]
            return len(fresh)

        # redis-py types the callable as returning None; with value_from_callable it returns its value.
        return int(self.redis.transaction(attempt, *marker_keys, value_from_callable=True))  # type: ignore[arg-type]

    def claim_webhook_change(self, instance_id: int, change: Change, source: str, marker_ttl: int) -> bool:
        """For a webhook about to be delivered: False when a polling round (or posted polling
        results) already reported the same change, so it must not be sent; otherwise records
        that this webhook reports it and returns True. One atomic round trip."""
        key = keys.change(instance_id, change.object_type, change.object_id)
        args: list[str | int] = [change.event_type, change.updated, source, MARKER_SLACK, marker_ttl]
        return bool(self._claim_webhook(keys=[key], args=args))

    # -- outcome of a round --------------------------------------------------------------

    def finish(
        self, instance_id: int, next_due: float, error: str | None = None, denied: bool = False
    ) -> dict[str, int]:
        """Record how a round ended and when the next is due. Returns the consecutive
        failure counts {"failures", "denied"} after this round."""
        state = keys.poll_state(instance_id)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                state, mapping={"last_finished": str(int(time.time())), "last_result": "failed" if error else "ok"}
            )
            if error is None:
                pipe.hset(state, mapping={"failures": "0", "denied": "0"})
                pipe.hdel(state, "last_error")
            else:
                pipe.hset(state, "last_error", error[:500])
                pipe.hincrby(state, "failures", 1)
                if denied:
                    pipe.hincrby(state, "denied", 1)
                else:
                    pipe.hset(state, "denied", "0")
            pipe.zadd(keys.POLL_DUE, {str(instance_id): next_due}, xx=True)
            pipe.hmget(state, "failures", "denied")
            *_, counts = pipe.execute()
        return {"failures": int(counts[0] or 0), "denied": int(counts[1] or 0)}

    def disable(self, instance_id: int, reason: str) -> None:
        """Switch polling off for the instance and say why; a PATCH enabling events resumes it."""
        now = time.time()
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.poll_state(instance_id), mapping={"disabled_reason": reason[:500],
                                                             "disabled_at": str(int(now))})  # fmt: skip
            pipe.zrem(keys.POLL_DUE, str(instance_id))
            pipe.zadd(keys.POLL_DISABLED, {str(instance_id): now})
            pipe.execute()


def notification(instance: Instance, batch: Sequence[Change]) -> InboxItem:
    """The inbox item for up to 10 polled changes. Its id is derived from the changes, so the
    same batch always gets the same notification id (`Elements-Webhook-Id`)."""
    fingerprint = "|".join(f"{c.object_type}:{c.object_id}:{c.event_type}:{c.updated}" for c in batch)
    return InboxItem(
        kind="poll",
        store_id=instance.store_id,
        event_id="poll-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:32],
        event_created=max(c.updated for c in batch),
        event_type=f"{batch[0].object_type}.polled",
        entity_id=None,
        data=None,
        instances=(instance.id,),
        received=time.time(),
        raw=orjson.dumps([c.raw for c in batch]).decode(),
        events=tuple(c.as_event() for c in batch),
    )


def marker_ttl(instance: Instance, dedup_ttl: int) -> int:
    """How long change markers live: past Ecwid's webhook retries (the dedup window) and past
    two polling intervals, so the next round's overlap still finds them."""
    return max(dedup_ttl, 2 * instance.poll_interval * 60 + 3600)
