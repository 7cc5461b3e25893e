"""The poller's Redis side: atomic claims, the round lock, and the webhook marker script."""

from __future__ import annotations

import threading

import pytest
import redis

from tests.workers.test_changes import MARKER_CASES, T
from tests.workers.test_delivery_log import _script_commands
from workers import keys
from workers.changes import POLL, Change, next_marker
from workers.instances import Instance, now_iso
from workers.poll_store import PollStore


@pytest.mark.parametrize(
    ("marker", "event_type", "updated", "source", "reported"), [c for c in MARKER_CASES if c[3] != POLL]
)
def test_the_webhook_script_follows_the_python_rules(
    redis_client: redis.Redis, marker: str | None, event_type: str, updated: int, source: str, reported: bool
) -> None:
    key = keys.change(1, "orders", "XJ12H")
    if marker is not None:
        redis_client.set(key, marker)
    change = Change("orders", "XJ12H", event_type, updated, None)
    assert PollStore(redis_client).claim_webhook_change(1, change, source, 3600) is (not reported)
    stored = redis_client.get(key)
    expected = marker if reported else (next_marker(marker, event_type, updated, source) or marker)
    assert (stored.decode() if stored else None) == expected
    if not reported and expected != marker:
        assert 3590 < redis_client.ttl(key) <= 3600


def test_two_planners_never_claim_an_instance_twice(redis_server: object, redis_client: redis.Redis) -> None:
    redis_client.zadd(keys.POLL_DUE, {str(i): T for i in range(1, 201)})
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def plan(n: int) -> None:
        connection = redis.Redis(connection_pool=redis.ConnectionPool(**redis_client.connection_pool.connection_kwargs))
        store = PollStore(connection)
        start.wait()
        for _ in range(20):
            claimed[n] += store.claim_due(T + 10, lease=300, limit=7)
        connection.close()

    threads = [threading.Thread(target=plan, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed[0] + claimed[1]) == list(range(1, 201))  # every one, exactly once
    assert claimed[0] and claimed[1]  # both planners took part
    assert redis_client.zrangebyscore(keys.POLL_DUE, "-inf", T + 10) == []


def test_the_round_lock_is_exclusive_renewable_and_released_only_by_its_holder(redis_client: redis.Redis) -> None:
    store = PollStore(redis_client)
    token = store.acquire(5, ttl=120)
    assert token is not None
    assert store.acquire(5, ttl=120) is None
    assert store.extend(5, "someone-else", 120) is False
    redis_client.expire(keys.poll_lock(5), 10)
    assert store.extend(5, token, 120) is True and redis_client.ttl(keys.poll_lock(5)) > 100
    store.release(5, "someone-else")
    assert redis_client.exists(keys.poll_lock(5)) == 1
    store.release(5, token)
    assert store.acquire(5, ttl=120) is not None


def test_reconcile_schedules_instances_stored_before_polling_existed(redis_client: redis.Redis) -> None:
    def store(instance_id: int, **config: str) -> None:
        base = {"event.notification.enabled": "true", "event.notification.callback.url": "http://127.0.0.1:9/h",
                "ecwid.api.token": "secret_x"}  # fmt: skip
        instance = Instance(instance_id, "owner", "n", "t", "custom", 1003, {**base, **config}, created=now_iso())
        redis_client.set(keys.instance(instance_id), instance.dumps())

    store(1, **{"event.vendor.type": "polling"})  # never scheduled: written by an older version
    store(2, **{"event.vendor.type": "webhook"})
    redis_client.zadd(keys.POLL_DUE, {"2": T})  # stale: no longer polls
    store(3, **{"event.vendor.type": "polling"})
    redis_client.zadd(keys.POLL_DISABLED, {"3": T})  # stopped after failures: stays stopped
    redis_client.set(keys.poll_lock(1), "x")  # other relay:instance* keys are not instances
    assert PollStore(redis_client).reconcile() == 1
    assert [int(i) for i in redis_client.zrange(keys.POLL_DUE, 0, -1)] == [1]
    assert redis_client.hget(keys.poll_state(1), "since") is not None
    assert PollStore(redis_client).reconcile() == 0


def test_a_change_costs_one_command_whether_its_entity_is_new_or_a_webhook_reported_it_before(
    redis_client: redis.Redis,
) -> None:
    store, key = PollStore(redis_client), keys.change(1, "orders", "A1")
    first, again, older = (Change("orders", "A1", "UPDATED", T + delta, None) for delta in (0, 60, -60))
    redis_client.config_resetstat()
    assert store.claim_webhook_changes([(1, first, "wh-1", 3600)]) == [True]
    assert _script_commands(redis_client) == {"set": 1}
    redis_client.config_resetstat()
    assert store.claim_webhook_changes([(1, again, "wh-2", 3600)]) == [True]  # the order updated again
    assert _script_commands(redis_client) == {"set": 1}  # was SET NX, GET and SET
    assert redis_client.get(key) == f"{T + 60} UPDATED wh-2".encode()
    # The rare case: a change older than the marker is delivered but leaves the newer marker in place.
    redis_client.config_resetstat()
    assert store.claim_webhook_changes([(1, older, "wh-3", 3600)]) == [True]
    assert _script_commands(redis_client) == {"set": 2}
    assert redis_client.get(key) == f"{T + 60} UPDATED wh-2".encode()
    assert 3590 < redis_client.ttl(key) <= 3600


def test_a_batch_claims_its_changes_in_one_call_in_order(redis_client: redis.Redis) -> None:
    reported = Change("orders", "A1", "UPDATED", T, None)
    redis_client.set(keys.change(1, "orders", "A1"), f"{T + 1} UPDATED {POLL}")
    fresh = Change("orders", "B2", "UPDATED", T, None)
    claims = [(1, reported, "wh-1", 3600), (1, fresh, "wh-2", 3600), (2, reported, "wh-3", 60)]
    assert PollStore(redis_client).claim_webhook_changes(claims) == [False, True, True]
    assert redis_client.get(keys.change(1, "orders", "A1")) == f"{T + 1} UPDATED {POLL}".encode()
    assert redis_client.get(keys.change(1, "orders", "B2")) == f"{T} UPDATED wh-2".encode()
    assert 50 < redis_client.ttl(keys.change(2, "orders", "A1")) <= 60
    # Claiming again for the same notification (a batch handed the event off) still delivers it.
    assert PollStore(redis_client).claim_webhook_changes([(1, fresh, "wh-2", 3600)]) == [True]
    assert PollStore(redis_client).claim_webhook_changes([]) == []
