"""Known answers for failure classification and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.failures import RETRY_SCHEDULE, judge_status, next_delay, retry_after

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "retry", "gone"),
    [(500, True, False), (502, True, False), (503, True, False), (408, True, False), (425, True, False),
     (429, True, False), (302, True, False), (400, False, False), (401, False, False), (404, False, False),
     (422, False, False), (410, False, True)],
)  # fmt: skip
def test_which_statuses_are_retried(status: int, retry: bool, gone: bool) -> None:
    verdict = judge_status(status)
    assert (verdict.retry, verdict.gone) == (retry, gone)
    assert verdict.reason.startswith(f"HTTP {status}")


def test_retry_after_in_seconds_or_as_an_http_date_is_clamped() -> None:
    assert retry_after("120", NOW) == 120
    assert retry_after(" 0 ", NOW) == 1
    assert retry_after("999999", NOW) == 6 * 3600
    assert retry_after("Wed, 25 Nov 2026 12:01:30 GMT", NOW) == 90
    assert retry_after("Wed, 25 Nov 2026 11:00:00 GMT", NOW) == 1  # in the past: soon
    for unreadable in (None, "", "soon", "-5", "1.5e400", "Wed, 99 Foo"):
        assert retry_after(unreadable, NOW) is None


def test_the_schedule_and_its_end() -> None:
    assert RETRY_SCHEDULE == (4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144)
    assert sum(RETRY_SCHEDULE) / 3600 == pytest.approx(97.1, abs=0.1)
    assert next_delay(0, None) == 4 and next_delay(1, None) == 16
    assert next_delay(1, 30) == 31  # the receiver's Retry-After wins, plus RQ's whole-second rounding
    assert next_delay(9, None) is None and next_delay(9, 30) is None  # ten attempts in all
