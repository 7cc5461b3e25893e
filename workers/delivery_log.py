"""The event log: what happened to each notification, per instance.

One record per (event, instance), keyed by the notification id (the
`Elements-Webhook-Id`, stable across retries and replays):

* `relay:delivery:{id}`: a hash: status, the event summary, the inbox item
  (kept for replay), when the next attempt is due, why it failed;
* `relay:delivery:{id}:attempts`: a list of attempts (time, HTTP status or error
  class, ms, at most 2 KB of the answer), the last `MAX_ATTEMPTS` kept;
* `relay:instance:{id}:deliveries`: a sorted set of the instance's records by
  creation time, newest last: the index the API pages through.

Status: RECEIVED (queued) → DISPATCHED (attempted, retry due at `next_attempt`)
→ NOTIFIED (2xx) or FAILED (permanent, or retries spent). PAUSED: waiting in the
buffer of an instance whose deliveries are paused (workers/pausing.py). SKIPPED: not sent on
purpose (events switched off, instance moved or deleted, already reported by
polling). Everything expires `retention` seconds after its last change, and an
instance's index keeps at most `MAX_PER_INSTANCE` records, deleting the oldest.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from workers import envelope, keys
from workers.inbox import InboxItem

STATUSES = ("RECEIVED", "DISPATCHED", "PAUSED", "NOTIFIED", "FAILED", "SKIPPED")
MAX_ATTEMPTS = 50
MAX_PER_INSTANCE = 100_000
BODY_EXCERPT = 2048

# Index one record, then drop what fell out of the retention window or over the cap,
# records included, so the index never points at much that is gone and never grows unbounded.
_INDEX = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local function drop(ids)
  for _, id in ipairs(ids) do
    redis.call('DEL', ARGV[5] .. id, ARGV[5] .. id .. ':attempts')
    redis.call('ZREM', KEYS[1], id)
  end
end
drop(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3], 'LIMIT', 0, 1000))
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if excess > 0 then drop(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""


def now_ms() -> int:
    return int(time.time() * 1000)


class DeliveryLog:
    def __init__(self, connection: redis.Redis, retention: int, max_per_instance: int = MAX_PER_INSTANCE) -> None:
        self.redis = connection
        self.retention = retention
        self.max_per_instance = max_per_instance
        self._index = connection.register_script(_INDEX)

    def received(self, pipe: redis.client.Pipeline, item: InboxItem, instance_id: int, job_id: str) -> None:
        """Add the RECEIVED record of `item` at `instance_id` to `pipe` (the dispatcher's MULTI)."""
        notification = item.notification_id(instance_id)
        created = now_ms()
        record = keys.delivery(notification)
        pipe.delete(record, keys.delivery_attempts(notification))
        pipe.hset(record, mapping={
            "id": notification, "instance": instance_id, "status": "RECEIVED", "created": created,
            "updated": created, "event": item.event_id, "kind": item.kind, "store": item.store_id,
            "summary": orjson.dumps(envelope.events(item)), "item": item.dumps(), "job": job_id, "replays": 0,
        })  # fmt: skip
        pipe.expire(record, self.retention)
        self._index(
            keys=[keys.instance_deliveries(instance_id)],
            args=[created, notification, created - self.retention * 1000, self.max_per_instance,
                  keys.PREFIX + "delivery:", self.retention * 1000],
            client=pipe,
        )  # fmt: skip

    def attempted(
        self, notification: str, attempt: dict[str, Any], status: str, *, next_attempt: int | None = None,
        reason: str | None = None,
    ) -> None:  # fmt: skip
        """Record one attempt and the status it leaves the delivery in."""
        record, attempts = keys.delivery(notification), keys.delivery_attempts(notification)
        if not self.redis.exists(record):
            return  # expired (retention shorter than the retry schedule): nothing to add to
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(attempts, orjson.dumps(attempt))
            pipe.ltrim(attempts, -MAX_ATTEMPTS, -1)
            self._set(pipe, notification, status, next_attempt=next_attempt, reason=reason)
            pipe.expire(attempts, self.retention)
            pipe.execute()

    def mark(self, notification: str, status: str, reason: str) -> None:
        """Set a status without an attempt (SKIPPED, or FAILED before any request was made)."""
        if self.redis.exists(keys.delivery(notification)):
            with self.redis.pipeline(transaction=True) as pipe:
                self._set(pipe, notification, status, reason=reason)
                pipe.execute()

    def _set(
        self, pipe: redis.client.Pipeline, notification: str, status: str, *, next_attempt: int | None = None,
        reason: str | None = None,
    ) -> None:  # fmt: skip
        record = keys.delivery(notification)
        fields: dict[str, Any] = {"status": status, "updated": now_ms(), "next_attempt": next_attempt or ""}
        fields["reason"] = reason or ""
        pipe.hset(record, mapping=fields)  # type: ignore[arg-type]
        pipe.expire(record, self.retention)

    def resumed(self, pipe: redis.client.Pipeline, notification: str, job_id: str) -> None:
        """A PAUSED delivery is queued again by the drain (in the drain's MULTI)."""
        record = keys.delivery(notification)
        pipe.hset(record, mapping={"status": "RECEIVED", "updated": now_ms(), "next_attempt": "", "reason": "",
                                   "job": job_id})  # fmt: skip
        pipe.expire(record, self.retention)

    def replayed(self, pipe: redis.client.Pipeline, notification: str, job_id: str) -> None:
        """Put a delivery back to RECEIVED for a replay (in the dispatcher's MULTI)."""
        record = keys.delivery(notification)
        pipe.hset(record, mapping={"status": "RECEIVED", "updated": now_ms(), "next_attempt": "", "reason": "",
                                   "job": job_id})  # fmt: skip
        pipe.hincrby(record, "replays", 1)
        pipe.expire(record, self.retention)


def attempt_entry(status: int | None, error: str | None, ms: float, body: bytes = b"") -> dict[str, Any]:
    return {
        "date": envelope.iso_date_ms(now_ms()),
        "status": status,
        "error": error,
        "ms": ms,
        "body": body[:BODY_EXCERPT].decode("utf-8", "replace"),
    }


def view(record: dict[str, str], attempts: list[str]) -> dict[str, Any]:
    """The API view of one record (pure): what happened, attempt by attempt."""
    item = orjson.loads(record["item"])
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
