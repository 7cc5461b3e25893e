"""The event log: what happened to each notification, per instance.

One record per (event, instance), keyed by the notification id (the
`Elements-Webhook-Id`, stable across retries and replays):

* `relay:delivery:{id}`: a hash: status, the event summary, the inbox item
  (kept for replay; written at the first decision on it, because until then the
  delivery job holds it and one copy of a queued event is enough), when the next
  attempt is due, why it failed;
* `relay:delivery:{id}:attempts`: a list of attempts (time, HTTP status or error
  class, ms, at most 2 KB of the answer), the last `MAX_ATTEMPTS` kept;
* `relay:instance:{id}:deliveries`: a sorted set of the instance's records by
  creation time, newest last: the index the API pages through.

Status: RECEIVED (queued) → DISPATCHED (attempted, retry due at `next_attempt`)
→ NOTIFIED (2xx) or FAILED (permanent, or retries spent). PAUSED: waiting in the
buffer of an instance whose deliveries are paused (workers/pausing.py). SKIPPED: not sent on
purpose (events switched off, instance moved or deleted, already reported by
polling). Records expire `retention` seconds after their last change; an index, at
least that long after its last record's (plus `INDEX_SLACK_MS`), and it keeps at most
`MAX_PER_INSTANCE` records, deleting the oldest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from workers import envelope, keys, lua
from workers.inbox import InboxItem

STATUSES = ("RECEIVED", "DISPATCHED", "PAUSED", "NOTIFIED", "FAILED", "SKIPPED")
MAX_ATTEMPTS = 50
MAX_PER_INSTANCE = 100_000
BODY_EXCERPT = 2048
# An index outlives its newest entry's creation by the retention and this much more (at most a tenth
# of the retention), so an outcome recorded within half of it (the common case: a batch delivers what
# was received a moment ago) needs no index refresh, two commands an instance saved; the other half
# covers clocks that disagree between hosts. Records still expire `retention` after their last change.
INDEX_SLACK_MS = 60_000

# A status change of an existing record (an expired one stays gone: no partial records), with an
# optional attempt, job id and replay count; refreshes the expiry of the record, its attempts and
# its instance's index. KEYS: record, attempts. ARGV: status, updated, next_attempt, reason, ttl,
# index prefix, attempt JSON or '', job id or '', '1' to count a replay, attempts kept,
# '1' to change only a delivery still RECEIVED or DISPATCHED, the inbox item or ''.
_STATUS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[11] == '1' then
  local now = redis.call('HGET', KEYS[1], 'status')
  if now ~= 'RECEIVED' and now ~= 'DISPATCHED' then return 0 end
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[2], 'next_attempt', ARGV[3], 'reason', ARGV[4])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'job', ARGV[8]) end
if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'item', ARGV[12]) end
if ARGV[9] == '1' then redis.call('HINCRBY', KEYS[1], 'replays', 1) end
local ttl = tonumber(ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[7] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[7])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[10]), -1)
end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ttl) end
local index = ARGV[6] .. redis.call('HGET', KEYS[1], 'instance') .. ':deliveries'
if redis.call('TTL', index) < ttl then redis.call('EXPIRE', index, ttl) end
return 1
"""

# The status changes of finished attempts, any number in one call (a batch's, or one delivery's): the
# common case, kept to four commands a record. KEYS: record and attempts of each outcome, then the index
# of each instance involved. ARGV: updated, ttl, attempts kept, number of outcomes, then status,
# next_attempt, reason, attempt JSON (or '') and inbox item of each. An expired record stays gone (EXPIRE
# says so).
_FINISH = """
local n, ttl, kept = tonumber(ARGV[4]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, n do
  local record, attempts, a = KEYS[2 * i - 1], KEYS[2 * i], 5 * i - 1
  if redis.call('EXPIRE', record, ttl) == 1 then
    redis.call('HSET', record, 'status', ARGV[a + 1], 'updated', ARGV[1], 'next_attempt', ARGV[a + 2],
               'reason', ARGV[a + 3], 'item', ARGV[a + 5])
    if ARGV[a + 4] ~= '' and redis.call('RPUSH', attempts, ARGV[a + 4]) > kept then
      redis.call('LTRIM', attempts, -kept, -1)
    end
    redis.call('EXPIRE', attempts, ttl)
  end
end
for i = 2 * n + 1, #KEYS do
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# New RECEIVED records, replacing any earlier record of the same notification and its attempts, and
# each in its instance's index; then each index is tidied once: entries older than the retention whose
# record has expired are forgotten (a record lives `retention` after its *last* change, so an old one
# may still be alive), and over the cap the oldest go, records included. So an index never grows
# without limit. KEYS: record and attempts of each record, then the indexes. ARGV: created, ttl (s),
# oldest score kept, cap, record key prefix, ttl (ms), number of records, then id, instance, event,
# kind, store, summary, job and index position (1-based, among the KEYS after the records) of each.
_RECEIVED = """
local created, ttl, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[7])
local members = {}
for i = 1, n do
  local record, a = KEYS[2 * i - 1], 8 * i
  redis.call('DEL', record, KEYS[2 * i])
  redis.call('HSET', record, 'id', ARGV[a], 'instance', ARGV[a + 1], 'status', 'RECEIVED', 'created', created,
             'updated', created, 'event', ARGV[a + 2], 'kind', ARGV[a + 3], 'store', ARGV[a + 4],
             'summary', ARGV[a + 5], 'job', ARGV[a + 6], 'replays', '0')
  redis.call('EXPIRE', record, ttl)
  local k = tonumber(ARGV[a + 7])
  local list = members[k] or {}
  list[#list + 1] = created
  list[#list + 1] = ARGV[a]
  members[k] = list
end
local prefix, cap = ARGV[5], tonumber(ARGV[4])
for k, list in pairs(members) do
  local index = KEYS[2 * n + k]
  redis.call('ZADD', index, unpack(list))
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. ARGV[3], 'LIMIT', 0, 100)) do
    if redis.call('EXISTS', prefix .. id) == 0 then
      redis.call('DEL', prefix .. id .. ':attempts')
      redis.call('ZREM', index, id)
    end
  end
  -- All but the newest `cap`, oldest first (none while within the cap): one command, not ZCARD and then ZRANGE.
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -cap - 1)) do
    redis.call('DEL', prefix .. id, prefix .. id .. ':attempts')
    redis.call('ZREM', index, id)
  end
  redis.call('PEXPIRE', index, ARGV[6])
end
return 1
"""

# Point a record at the job that now carries it, if the record has not expired.
_POINT = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'job', ARGV[1]) end return 1"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Outcome:
    """What one attempt (or a decision not to make one) left a delivery in, for `DeliveryLog.finish`."""

    notification: str
    instance_id: int
    item: str  # the inbox item, as queued: kept for replay once the job that carried it is gone
    status: str
    reason: str | None = None
    attempt: dict[str, Any] | None = None  # attempt_entry(), when a request was made
    next_attempt: int | None = None  # ms, when a retry is due
    received: float = 0.0  # when the receiver took the event (InboxItem.received); 0: not known


class DeliveryLog:
    def __init__(self, connection: redis.Redis, retention: int, max_per_instance: int = MAX_PER_INSTANCE) -> None:
        self.redis = connection
        self.retention = retention
        self.index_slack_ms = min(INDEX_SLACK_MS, retention * 100)
        self.max_per_instance = max_per_instance
        self._set_status = connection.register_script(_STATUS)
        self._point = connection.register_script(_POINT)
        self._finish = connection.register_script(_FINISH)
        self._received = connection.register_script(_RECEIVED)

    def received(self, pipe: redis.client.Pipeline, item: InboxItem, instance_id: int, job_id: str) -> None:
        """Add the RECEIVED record of `item` at `instance_id` to `pipe` (the dispatcher's MULTI)."""
        self.received_many(pipe, [(item, instance_id, job_id)])

    def received_many(self, pipe: redis.client.Pipeline, records: list[tuple[InboxItem, int, str]]) -> None:
        """Add RECEIVED records, (item, instance id, job id) each, to `pipe`; each instance's index
        is added to and tidied once for all of its records."""
        if not records:
            return
        created = now_ms()
        retention_ms = self.retention * 1000
        positions: dict[int, int] = {}  # instance id -> its index's position among the keys
        names: list[str] = []
        fields: list[str | int | bytes] = [created, self.retention, created - retention_ms, self.max_per_instance,
                                           keys.PREFIX + "delivery:", retention_ms + self.index_slack_ms,
                                           len(records)]  # fmt: skip
        for item, instance_id, job_id in records:
            notification = item.notification_id(instance_id)
            names += [keys.delivery(notification), keys.delivery_attempts(notification)]
            position = positions.setdefault(instance_id, len(positions) + 1)
            fields += [notification, instance_id, item.event_id, item.kind, item.store_id,
                       orjson.dumps(envelope.events(item)), job_id, position]  # fmt: skip
        names += [keys.instance_deliveries(instance_id) for instance_id in positions]
        # One command for the batch: packing three per record and one per instance was most of the
        # dispatcher's CPU (and grew with the number of instances a batch goes to).
        lua.call(self._received, names, fields, pipe)

    def finish(self, outcomes: list[Outcome], pipe: redis.client.Pipeline | None = None) -> None:
        """Record `outcomes` (status, reason, attempt) in one script call; records that expired
        meanwhile stay gone. The index of an instance is made to outlive the records only for
        outcomes received long enough ago for the expiry that indexing gave it to fall short."""
        if not outcomes:
            return
        updated = now_ms()
        names: list[str] = []
        args: list[str | int | bytes] = [updated, self.retention, MAX_ATTEMPTS, len(outcomes)]
        for outcome in outcomes:
            names += [keys.delivery(outcome.notification), keys.delivery_attempts(outcome.notification)]
            attempt = orjson.dumps(outcome.attempt) if outcome.attempt is not None else b""
            args += [outcome.status, outcome.next_attempt or "", outcome.reason or "", attempt, outcome.item]
        # Received after this, an outcome's record was indexed when its index was given at least
        # `retention` from now: a record is indexed (dispatched) after it is received.
        covered = (updated - self.index_slack_ms / 2) / 1000
        refresh = {outcome.instance_id for outcome in outcomes if outcome.received < covered}
        names += [keys.instance_deliveries(i) for i in sorted(refresh)]
        lua.call(self._finish, names, args, pipe)

    def attempted(
        self, notification: str, instance_id: int, item: str, attempt: dict[str, Any], status: str, *,
        next_attempt: int | None = None, reason: str | None = None,
    ) -> None:  # fmt: skip
        """Record one attempt of delivering `item` and the status it leaves the delivery in (nothing if
        the record expired)."""
        self.finish([Outcome(notification, instance_id, item, status, reason, attempt, next_attempt)])

    def mark(
        self, notification: str, instance_id: int, item: str, status: str, reason: str, *, only_pending: bool = False
    ) -> None:
        """Set a status without an attempt (SKIPPED, PAUSED, or FAILED before any request was made).
        `only_pending`: leave it be unless it is still RECEIVED or DISPATCHED."""
        if only_pending:
            self._status(notification, status, reason=reason, pending=True, item=item)
        else:
            self.finish([Outcome(notification, instance_id, item, status, reason)])

    def resumed(self, pipe: redis.client.Pipeline, notification: str, job_id: str) -> None:
        """A PAUSED delivery is queued again by the drain (in the drain's MULTI)."""
        self._status(notification, "RECEIVED", job=job_id, pipe=pipe)

    def handed_off(self, pipe: redis.client.Pipeline, notification: str, job_id: str) -> None:
        """A batch gave the delivery to a job of its own (in the batch's MULTI); its status stays."""
        lua.call(self._point, [keys.delivery(notification)], [job_id], pipe)

    def replayed(self, pipe: redis.client.Pipeline, notification: str, job_id: str) -> None:
        """Put a delivery back to RECEIVED for a replay (in the dispatcher's MULTI)."""
        self._status(notification, "RECEIVED", job=job_id, replay=True, pipe=pipe)

    def _status(
        self, notification: str, status: str, *, next_attempt: int | None = None, reason: str | None = None,
        attempt: bytes = b"", job: str = "", replay: bool = False, pipe: redis.client.Pipeline | None = None,
        pending: bool = False, item: str = "",
    ) -> None:  # fmt: skip
        lua.call(
            self._set_status,
            [keys.delivery(notification), keys.delivery_attempts(notification)],
            [status, now_ms(), next_attempt or "", reason or "", self.retention, keys.PREFIX + "instance:",
             attempt, job, "1" if replay else "0", MAX_ATTEMPTS, "1" if pending else "0", item],
            pipe,
        )  # fmt: skip


def attempt_entry(status: int | None, error: str | None, ms: float, body: bytes = b"") -> dict[str, Any]:
    return {
        "date": envelope.iso_date_ms(now_ms()),
        "status": status,
        "error": error,
        "ms": ms,
        "body": body[:BODY_EXCERPT].decode("utf-8", "replace"),
    }


def view(record: dict[str, str], attempts: list[str], queued: str | None = None) -> dict[str, Any]:
    """The API view of one record (pure): what happened, attempt by attempt. `queued` is the inbox
    item from the job of a record that has none yet (RECEIVED: nothing was decided on it so far)."""
    stored = record.get("item") or queued
    item = orjson.loads(stored) if stored else {}
    next_attempt = record.get("next_attempt")
    return {
        "id": record["id"],
        "eventId": record.get("event"),
        "instanceId": int(record["instance"]),
        "eventDate": envelope.iso_date_ms(int(record["created"])),
        "updatedDate": envelope.iso_date_ms(int(record["updated"])),
        "status": record["status"],
        "reason": record.get("reason") or None,
        "nextAttemptDate": envelope.iso_date_ms(int(next_attempt)) if next_attempt else None,
        "events": orjson.loads(record["summary"]),
        "attempts": [orjson.loads(attempt) for attempt in attempts],
        "replays": int(record.get("replays", "0")),
        "providerData": item.get("raw"),
    }
