"""The benchmark's events: what the relay is measured on must look like a store's real traffic."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from bench import load
from workers.signatures import ecwid_signature_matches


def _orders(hooks: list[load.Webhook]) -> list[tuple[int, int]]:
    documents = [orjson.loads(hook.body) for hook in hooks]
    assert all(d["entityId"] == int(d["data"]["orderId"][1:]) for d in documents)
    return [(d["storeId"], d["entityId"]) for d in documents]


def test_each_order_changes_four_times_and_its_changes_lie_apart() -> None:
    hooks = load.webhooks("t", 20, [7], "secret")
    orders = _orders(hooks)
    assert orders == [(7, n % 5) for n in range(20)]
    assert len({hook.event_id for hook in hooks}) == 20


def test_stores_take_turns_and_each_store_repeats_its_own_orders() -> None:
    hooks = load.webhooks("t", 24, [1, 2, 3], "secret")
    assert [hook.store_id for hook in hooks] == [1, 2, 3] * 8
    assert Counter(_orders(hooks)) == {(store, order): 4 for store in (1, 2, 3) for order in (0, 1)}


def test_a_store_with_fewer_events_than_repeats_changes_one_order() -> None:
    hooks = load.webhooks("t", 3, [1, 2, 3, 4, 5], "secret")
    assert _orders(hooks) == [(1, 0), (2, 0), (3, 0)]


def test_every_webhook_is_signed_as_ecwid_signs_it() -> None:
    for hook in load.webhooks("t", 5, [1], "secret", payload=1024):
        document = orjson.loads(hook.body)
        assert document["eventId"] == hook.event_id
        assert ecwid_signature_matches(hook.signature, "secret", str(document["eventCreated"]), hook.event_id)
        assert not ecwid_signature_matches(hook.signature, "other", str(document["eventCreated"]), hook.event_id)
        assert 1000 <= len(hook.body) <= 1024


def test_a_store_with_fewer_events_changes_its_orders_fewer_times() -> None:
    hooks = load.webhooks("t", 9, [1, 2], "secret", repeats=2)  # 5 events for store 1, 4 for store 2
    # Both stores have ceil(5 / 2) = 3 orders; their k-th events are about order k mod 3.
    assert Counter(_orders(hooks)) == {(1, 0): 2, (1, 1): 2, (1, 2): 1, (2, 0): 2, (2, 1): 1, (2, 2): 1}


def test_every_event_is_a_new_order_with_one_change_each() -> None:
    assert _orders(load.webhooks("t", 6, [1, 2], "secret", repeats=1)) == [
        (1, 0),
        (2, 0),
        (1, 1),
        (2, 1),
        (1, 2),
        (2, 2),
    ]
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        load.webhooks("t", 6, [1], "secret", repeats=0)
