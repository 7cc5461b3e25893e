"""What a failed delivery attempt means, and when to try again (pure functions).

Retry only what retrying can fix: connection errors, timeouts, 408, 425, 429,
5xx (and the odd 1xx/3xx, since a redirect we do not follow may be temporary
maintenance). Any other 4xx means the receiver rejected the notification: the
delivery fails at once. 410 Gone says the endpoint is gone for good.
`Retry-After` (seconds or an HTTP date) replaces the schedule's delay, clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# The Cloud Elements schedule: 4^n seconds after the n-th failure, 9 retries, about 73 hours.
RETRY_SCHEDULE = tuple(4**attempt for attempt in range(1, 10))
RETRYABLE_4XX = frozenset({408, 425, 429})
MIN_RETRY_AFTER = 1
MAX_RETRY_AFTER = 6 * 3600


@dataclass(frozen=True)
class Verdict:
    retry: bool  # worth another attempt
    reason: str  # for the event log and the logs: "HTTP 503", "ConnectTimeout", ...
    gone: bool = False  # 410: the endpoint says it is gone


def judge_status(status: int) -> Verdict:
    """The verdict on an HTTP answer that was not 2xx."""
    if status == 410:
        return Verdict(False, "HTTP 410 Gone: the endpoint says it no longer exists", gone=True)
    if 400 <= status < 500 and status not in RETRYABLE_4XX:
        return Verdict(False, f"HTTP {status}: the endpoint rejected the notification")
    return Verdict(True, f"HTTP {status}")


def retry_after(value: str | None, now: datetime | None = None) -> int | None:
    """Seconds to wait per a `Retry-After` header (delta-seconds or HTTP-date), clamped to
    [1 s, 6 h]; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return int(min(max(seconds, MIN_RETRY_AFTER), MAX_RETRY_AFTER))


def next_delay(retries_done: int, asked: int | None) -> int | None:
    """Seconds until the next attempt after `retries_done` retries, or None when the schedule
    is spent. The receiver's `Retry-After` (already clamped) wins over the schedule, and is never undercut."""
    if retries_done >= len(RETRY_SCHEDULE):
        return None
    # RQ schedules in whole seconds, truncated: one more keeps a retry from coming before `asked`.
    return asked + 1 if asked is not None else RETRY_SCHEDULE[retries_done]
