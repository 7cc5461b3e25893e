"""The pause-and-drain state machine (workers/pausing.py), against a real Redis."""

from __future__ import annotations

import redis

from workers import keys
from workers.pausing import Pauses, drain_size, probe_delay


def test_failures_in_a_row_pause_and_a_success_resets_the_count(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    assert pauses.failed(7, 3, "HTTP 503") == 0
    assert pauses.failed(7, 3, "HTTP 503") == 0
    assert pauses.gate(7, "item-a").failures == 2  # still flowing, two failures counted
    pauses.succeeded(7)
    assert pauses.gate(7, "item-a").failures == 0
    assert [pauses.failed(7, 3, "HTTP 500") for _ in range(4)] == [0, 0, 1, 2]
    state = pauses.state(7)
    assert state["state"] == "paused" and state["reason"] == "3 failed attempts in a row; last: HTTP 500"
    assert "manual" not in state
    assert redis_client.zscore(keys.DELIVERY_DUE, 7) is not None  # a probe is scheduled


def test_a_paused_instance_buffers_in_order_and_a_draining_one_keeps_new_items_behind(
    redis_client: redis.Redis,
) -> None:
    pauses = Pauses(redis_client)
    pauses.pause(8, "paused by hand")
    assert [pauses.gate(8, item).parked for item in ("a", "b", "c")] == [True, True, True]
    assert redis_client.zscore(keys.DELIVERY_DUE, 8) is None  # by hand: no probes
    assert pauses.resume(8) is True and pauses.resume(8) is False
    assert pauses.gate(8, "d").parked is True  # new while draining: behind the buffer
    assert pauses.gate(8, "a", drained=True).parked is False  # the drain's own jobs go through
    assert pauses.buffered(8, 10) == ["a", "b", "c", "d"]
    with redis_client.pipeline(transaction=True) as pipe:
        pauses.drained(pipe, 8, 3)
        pipe.execute()
    assert pauses.buffered(8, 10) == ["d"] and pauses.state(8)["step"] == "1"
    with redis_client.pipeline(transaction=True) as pipe:
        pauses.drained(pipe, 8, 1)
        pipe.execute()
    assert pauses.state(8) == {} and redis_client.zscore(keys.DELIVERY_DUE, 8) is None
    assert pauses.gate(8, "e").parked is False  # flowing again


def test_a_probe_that_reached_the_endpoint_drops_its_item_and_starts_the_drain(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    for _ in range(2):
        pauses.failed(9, 2, "ConnectError")
    for item in ("x", "y"):
        assert pauses.gate(9, item).parked
    assert pauses.head(9) == "x"
    assert pauses.probe_failed(9) == 10 and pauses.probe_failed(9) == 20
    pauses.probe_reached(9, "x")
    assert pauses.buffered(9, 10) == ["y"]
    state = pauses.state(9)
    assert state["state"] == "draining" and "failures" not in state and state["probes"] == "0"
    assert pauses.claim_due() == [9]  # due now, and leased: a second claim finds nothing
    assert pauses.claim_due() == []


def test_the_first_item_parked_after_a_pause_makes_the_probe_due_at_once(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    pauses.failed(10, 1, "HTTP 502")
    assert pauses.claim_due() == []  # the first probe is PROBE_FIRST seconds away
    assert pauses.gate(10, "first").parked
    assert pauses.claim_due() == [10]


def test_backoff_and_ramp() -> None:
    assert [probe_delay(n) for n in (0, 1, 2, 3, 9, 10, 100)] == [5, 10, 20, 40, 2560, 3600, 3600]
    assert [drain_size(n) for n in (0, 1, 2, 6, 7, 50)] == [10, 20, 40, 640, 640, 640]
