"""Scripts in a transaction: queued by text, so they neither cost a round trip nor miss."""

from __future__ import annotations

import redis

from workers import lua

SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCR', KEYS[2])"


def script_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("script|exists", "script", "eval", "evalsha")
    }


def test_a_script_in_a_transaction_runs_after_redis_lost_its_scripts(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(SCRIPT)
    assert lua.call(script, ["a", "n"], ["1"]) == 1  # now: by SHA, loaded on demand
    redis_client.script_flush()
    with redis_client.pipeline(transaction=True) as pipe:
        pipe.set("before", "x")
        assert lua.call(script, ["a", "n"], ["2"], pipe) is None
        pipe.set("after", "y")
        assert pipe.execute() == [True, 2, True]
    assert redis_client.mget("a", "before", "after") == [b"2", b"x", b"y"]


def test_a_transaction_with_a_script_takes_one_round_trip(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(SCRIPT)
    before = script_calls(redis_client)
    with redis_client.pipeline(transaction=True) as pipe:
        lua.call(script, ["a", "n"], ["1"], pipe)
        lua.call(script, ["b", "n"], ["2"], pipe)
        pipe.execute()
    after = script_calls(redis_client)
    # Two EVALs inside the MULTI; no SCRIPT EXISTS (nor LOAD) before it, no EVALSHA.
    assert {name: after[name] - before[name] for name in after} == {
        "script|exists": 0,
        "script": 0,
        "eval": 2,
        "evalsha": 0,
    }
