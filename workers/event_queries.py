"""Reading the event log and asking for replays: shared by the API and the CLI.

Async (redis.asyncio), so the receiver's event loop never blocks; the CLI runs
it with `asyncio.run`. Pages are newest first. A page cursor is the last entry
returned ("<created ms>:<notification id>"), stable while new entries arrive.
Each call scans at most `MAX_SCAN` index entries, so a filter that matches
little still answers quickly (with a cursor to go on from).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis
from rq.job import Job

from workers import jobs, keys
from workers.delivery_log import STATUSES, view
from workers.inbox import InboxItem, notification_id

MAX_SCAN = 5000
CHUNK = 100
REPLAYABLE = ("NOTIFIED", "FAILED", "SKIPPED")  # final: replaying one in progress would race it
MAX_REPLAY = 1000
MAX_DIGITS = 15  # unix seconds or ms; longer is nonsense (and past Python's int limit, an error)


class QueryError(ValueError):
    """A filter or cursor that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Filter:
    statuses: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None


def parse_filter(status: str | None, since: str | None, until: str | None) -> Filter:
    """`status` is a comma-separated list; times are ISO 8601 or unix seconds. Raises QueryError."""
    statuses = tuple(part.strip().upper() for part in (status or "").split(",") if part.strip())
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise QueryError(f"status must be among {', '.join(STATUSES)}, not {unknown[0][:30]!r}")
    return Filter(statuses, _time_ms("from", since), _time_ms("to", until))


def _time_ms(name: str, value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if text.isascii() and text.isdigit():
            if len(text) > MAX_DIGITS:
                raise ValueError(text)
            return int(text) * 1000
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name} must be an ISO 8601 time or unix seconds") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)


def resolve(instance_id: int, store_id: int, event: str) -> str:
    """A notification id from what a user knows: the id itself, or Ecwid's eventId."""
    try:
        return str(uuid.UUID(event))
    except ValueError:
        return notification_id(store_id, event, instance_id)


async def one(connection: aioredis.Redis, instance_id: int, notification: str) -> dict[str, Any] | None:
    """The full view of one notification of the instance, attempts included; None if not logged."""
    return (await _load(connection, instance_id, [notification]))[0]


async def _load(connection: aioredis.Redis, instance_id: int, notifications: list[str]) -> list[dict[str, Any] | None]:
    """Views of several notifications in one round trip (two when some are still queued); None for
    those gone or not the instance's."""
    async with connection.pipeline(transaction=False) as pipe:
        for notification in notifications:
            pipe.hgetall(keys.delivery(notification))
            pipe.lrange(keys.delivery_attempts(notification), 0, -1)
        replies = await pipe.execute()
    records = [{k.decode(): v.decode() for k, v in record.items()} for record in replies[::2]]
    queued = await _queued_items(connection, records)
    views: list[dict[str, Any] | None] = []
    for fields, attempts in zip(records, replies[1::2], strict=True):
        ok = bool(fields) and fields.get("instance") == str(instance_id)
        views.append(view(fields, [a.decode() for a in attempts], queued.get(fields.get("id", ""))) if ok else None)
    return views


async def _queued_items(connection: aioredis.Redis, records: list[dict[str, str]]) -> dict[str, str]:
    """The inbox items of records not yet decided on, by notification id, read from their delivery
    jobs. (Events waiting in a callback URL's pending list, workers/pending.py, show none yet.)"""
    waiting = [record for record in records if record and "item" not in record and record.get("job", "")[:4] == "dlv-"]
    if not waiting:
        return {}
    async with connection.pipeline(transaction=False) as pipe:
        for record in waiting:
            pipe.hget(Job.key_for(record["job"]), "data")
        found = await pipe.execute()
    items: dict[str, str] = {}
    for data in found:
        carried = jobs.carried_item(data) if data else None
        if carried is not None:
            text, instance_id = carried
            items[InboxItem.loads(text).notification_id(instance_id)] = text
    return items


async def page(
    connection: aioredis.Redis, instance_id: int, wanted: Filter, size: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `size` views matching `wanted`, newest first, and the cursor for the next page."""
    top, skip_until = _from_cursor(cursor, wanted.until_ms)
    low = wanted.since_ms if wanted.since_ms is not None else "-inf"
    entries: list[tuple[bytes, float]] = await connection.zrevrangebyscore(
        keys.instance_deliveries(instance_id), top, low, start=0, num=MAX_SCAN, withscores=True
    )  # type: ignore[assignment]
    candidates = [(int(score), member.decode()) for member, score in entries]
    if skip_until is not None:
        candidates = [entry for entry in candidates if entry < skip_until]  # the rest came on earlier pages
    found: list[dict[str, Any]] = []
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start : start + CHUNK]
        for (score, notification), item in zip(
            chunk, await _load(connection, instance_id, [n for _, n in chunk]), strict=True
        ):
            if item is None or (wanted.statuses and item["status"] not in wanted.statuses):
                continue
            found.append(item)
            if len(found) == size:
                return found, f"{score}:{notification}"
    more = len(entries) == MAX_SCAN and candidates
    return found, (f"{candidates[-1][0]}:{candidates[-1][1]}" if more else None)


def _from_cursor(cursor: str | None, until_ms: int | None) -> tuple[float | str, tuple[int, str] | None]:
    top: float | str = until_ms if until_ms is not None else "+inf"
    if not cursor:
        return top, None
    score, sep, notification = cursor.partition(":")
    if not sep or not score.isascii() or not score.isdigit() or len(score) > MAX_DIGITS:
        raise QueryError("nextPage is not a cursor this API returned")
    return int(score), (int(score), notification)


async def request_replay(connection: aioredis.Redis, instance_id: int, store_id: int, notifications: list[str]) -> int:
    """Queue a replay of `notifications` (the dispatcher sends them again). Returns how many."""
    if not notifications:
        return 0
    now = time.time()
    item = InboxItem(
        kind="replay", store_id=store_id, event_id=uuid.uuid4().hex, event_created=int(now), event_type="replay",
        entity_id=None, data=None, instances=(instance_id,), received=now, raw=orjson.dumps(notifications).decode(),
    )  # fmt: skip
    await connection.lpush(keys.INBOX, item.dumps())
    return len(notifications)
