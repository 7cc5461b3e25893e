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

# claim_webhook_changes in one round trip: is_reported() and next_marker() of workers/changes.py
# for webhook sources (tests/workers/test_poll_store.py holds the two to the same cases). KEYS: the
# marker of each change. ARGV: slack, then kind, updated, source and marker TTL of each change.
# Returns 1 per change to deliver, 0 per change polling already reported. The common cases cost one
# SET: a change of an entity with no marker, and a newer change of one a webhook reported before (an
# order updated again). The SET writes this change's marker and returns the one it replaced; in the
# rare cases where that one must stay (polling reported this change, or it is newer than this change)
# a second SET puts it back, with this claim's TTL.
_CLAIM_WEBHOOK = """
local claimed = {}
for i, key in ipairs(KEYS) do
  local kind_in, updated, source, ttl = ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), ARGV[4 * i], ARGV[4 * i + 1]
  local mine = ARGV[4 * i - 1] .. ' ' .. kind_in .. ' ' .. source
  claimed[i] = 1
  local marker = redis.call('SET', key, mine, 'EX', ttl, 'GET')
  if marker then
    local when, kind, who = string.match(marker, '^(%-?%d+) (%S+) (.+)$')
    when = tonumber(when)
    local keep = false
    if who == 'poll' and ((kind_in == 'DELETED' and kind == 'DELETED')
                          or (kind_in ~= 'DELETED' and updated <= when + tonumber(ARGV[1]))) then
      claimed[i], keep = 0, true
    elseif updated < when and kind_in ~= 'DELETED' then
      keep = true
    end
    if keep then redis.call('SET', key, marker, 'KEEPTTL') end
  end
end
return claimed
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
        return self.claim_webhook_changes([(instance_id, change, source, marker_ttl)])[0]

    def claim_webhook_changes(self, claims: list[tuple[int, Change, str, int]]) -> list[bool]:
        """`claim_webhook_change` for several (instance id, change, source, marker TTL) in one
        atomic round trip, in order. Claiming again for the same source is harmless: a batch that
        hands an event off (workers/batches.py) has claimed it, and its own job claims it again."""
        if not claims:
            return []
        names: list[str] = []
        args: list[str | int] = [MARKER_SLACK]
        for instance_id, change, source, ttl in claims:
            names.append(keys.change(instance_id, change.object_type, change.object_id))
            args += [change.event_type, change.updated, source, ttl]
        return [bool(flag) for flag in self._claim_webhook(keys=names, args=args)]

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
