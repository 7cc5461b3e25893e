"""The pause-and-drain state machine (workers/pausing.py), against a real Redis."""

from __future__ import annotations

import redis

from workers import keys
from workers.pausing import PAUSE_SCRIPT, Pauses, drain_size, now_ms, probe_delay


def test_failures_in_a_row_pause_and_a_success_resets_the_count(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    assert pauses.failed(7, 3, "HTTP 503") == 0
    assert pauses.failed(7, 3, "HTTP 503") == 0
    assert pauses.gate(7, "item-a").parked is False  # still flowing...
    assert pauses.state(7) == {"failures": "2"}  # ...with two failures counted
    pauses.succeeded(7)
    assert pauses.state(7) == {}
    assert [pauses.failed(7, 3, "HTTP 500") for _ in range(4)] == [0, 0, 1, 2]
    state = pauses.state(7)
    assert state["state"] == "paused" and state["reason"] == "3 failed attempts in a row; last: HTTP 500"
    assert "manual" not in state
    assert redis_client.zscore(keys.DELIVERY_DUE, 7) is not None  # a probe is scheduled
    assert redis_client.smembers(keys.DELIVERY_PAUSED) == {b"7"}


def test_a_paused_instance_buffers_in_order_and_a_draining_one_keeps_new_items_behind(
    redis_client: redis.Redis,
) -> None:
    pauses = Pauses(redis_client)
    pauses.pause(8, "paused by hand")
    assert [pauses.gate(8, item).parked for item in ("a", "b", "c")] == [True, True, True]
    assert redis_client.zscore(keys.DELIVERY_DUE, 8) is None  # by hand: no probes...
    assert redis_client.sismember(keys.DELIVERY_PAUSED, 8)  # ...but listed as paused
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
    assert not redis_client.sismember(keys.DELIVERY_PAUSED, 8)
    assert pauses.gate(8, "e").parked is False  # flowing again


def test_a_probe_that_reached_the_endpoint_drops_its_item_and_starts_the_drain(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    for _ in range(2):
        pauses.failed(9, 2, "ConnectError")
    for item in ("x", "y"):
        assert pauses.gate(9, item).parked
    assert pauses.head(9) == "x"
    assert pauses.probe_failed(9, "x") == 10 and pauses.probe_failed(9, "y") == 20
    assert pauses.head(9) == "x"
    pauses.probe_reached(9, "x")
    assert pauses.buffered(9, 10) == ["y"]
    state = pauses.state(9)
    assert state["state"] == "draining" and "failures" not in state and state["probes"] == "0"
    assert pauses.claim_due()[0] == [9]  # due now, and leased: a second claim finds nothing
    assert pauses.claim_due()[0] == []


def test_the_first_probe_comes_after_a_wait_and_a_later_first_item_makes_it_due_at_once(
    redis_client: redis.Redis,
) -> None:
    pauses = Pauses(redis_client)
    pauses.failed(10, 1, "HTTP 502")
    assert pauses.gate(10, "first").parked  # the failing delivery parks itself at once...
    assert pauses.claim_due()[0] == []  # ...and the probe still waits PROBE_FIRST
    redis_client.delete(keys.delivery_buffer(10))
    redis_client.hset(keys.delivery_state(10), "since", now_ms() - 60_000)  # paused a minute ago
    redis_client.zadd(keys.DELIVERY_DUE, {"10": now_ms() + 3_600_000})  # next probe in an hour
    assert pauses.gate(10, "late").parked
    assert pauses.claim_due()[0] == [10]  # an event after a quiet spell is probed with at once


def test_a_failed_probe_sends_its_item_to_the_back_so_one_bad_event_cannot_block_the_rest(
    redis_client: redis.Redis,
) -> None:
    pauses = Pauses(redis_client)
    pauses.failed(11, 1, "HTTP 500")
    for item in ("poison", "good-1", "good-2"):
        pauses.gate(11, item)
    assert pauses.probe_failed(11, "poison") == 10
    assert pauses.buffered(11, 10) == ["good-1", "good-2", "poison"]
    assert pauses.probe_failed(11, "stale") == 20  # an item no longer at the head stays where it is
    assert pauses.buffered(11, 10) == ["good-1", "good-2", "poison"]


def test_a_late_tick_cannot_unschedule_what_was_set_up_meanwhile(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    pauses.pause(12, "paused by hand")
    redis_client.zadd(keys.DELIVERY_DUE, {"12": now_ms()})  # a stale schedule entry
    due, lease = pauses.claim_due()
    assert due == [12] and pauses.holds(12, lease) and not pauses.holds(12, lease - 1)
    assert pauses.resume(12)  # a person resumes before the tick runs: a drain is due now
    assert not pauses.holds(12, lease)  # the late tick sees its lease superseded
    pauses.idle(12)  # and even an idle tick leaves a draining instance's schedule alone
    assert redis_client.zscore(keys.DELIVERY_DUE, 12) is not None


def test_a_pause_by_hand_over_a_pause_after_failures_stops_its_probes(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    pauses.failed(13, 1, "HTTP 500")
    since = pauses.state(13)["since"]
    by_hand = redis_client.register_script(PAUSE_SCRIPT)
    state_keys = [keys.delivery_state(13), keys.DELIVERY_DUE, keys.DELIVERY_PAUSED]
    by_hand(keys=state_keys, args=[now_ms() + 5, "paused by hand", 13, "1"])
    state = pauses.state(13)
    assert (state["state"], state["since"], state["reason"], state["manual"]) == (
        "paused",
        since,
        "paused by hand",
        "1",
    )
    assert redis_client.zscore(keys.DELIVERY_DUE, 13) is None


def test_backoff_and_ramp() -> None:
    assert [probe_delay(n) for n in (0, 1, 2, 3, 9, 10, 100)] == [5, 10, 20, 40, 2560, 3600, 3600]
    assert [drain_size(n) for n in (0, 1, 2, 6, 7, 50)] == [10, 20, 40, 640, 640, 640]


def test_a_batch_is_gated_in_one_call_per_item_in_order(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    pauses.pause(20, "paused by hand")
    for _ in range(2):
        pauses.failed(22, 2, "HTTP 503")  # paused after failures: probed
    items = [(20, "a"), (21, "b"), (22, "c"), (20, "d"), (21, "e")]
    assert pauses.gate_many(items) == [True, False, True, True, False]
    assert pauses.buffered(20, 10) == ["a", "d"] and pauses.buffered(22, 10) == ["c"]
    assert pauses.buffered(21, 10) == []
    assert redis_client.zscore(keys.DELIVERY_DUE, 20) is None  # by hand: still no probes
    assert redis_client.zscore(keys.DELIVERY_DUE, 22) is not None
    assert pauses.gate_many([]) == []


def test_a_batch_ends_the_failure_runs_of_its_instances_in_one_command(redis_client: redis.Redis) -> None:
    pauses = Pauses(redis_client)
    for instance_id in (1, 2, 3):
        assert pauses.failed(instance_id, 5, "HTTP 503") == 0
    before = int(redis_client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))
    with redis_client.pipeline(transaction=True) as pipe:
        pauses.succeeded_many([1, 2], pipe)
        pauses.succeeded_many([], pipe)
        pipe.execute()
    assert int(redis_client.info("commandstats")["cmdstat_eval"]["calls"]) - before == 1
    assert [redis_client.hget(keys.delivery_state(i), "failures") for i in (1, 2, 3)] == [None, None, b"1"]
    assert pauses.failed(1, 5, "HTTP 503") == 0 and redis_client.hget(keys.delivery_state(1), "failures") == b"1"
