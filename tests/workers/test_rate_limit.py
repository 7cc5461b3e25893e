"""The per-token request budget, shared through Redis (real redis-server)."""

from __future__ import annotations

import time

import pytest
import redis

from workers.rate_limit import BudgetExhausted, TokenBudget, token_key


def test_the_budget_allows_a_burst_then_spaces_requests(redis_client: redis.Redis) -> None:
    budget = TokenBudget(redis_client, per_minute=60, burst=3)  # one a second, three at once
    soon = time.monotonic() + 0.2
    for _ in range(4):
        budget.acquire("secret_a", soon)
    with pytest.raises(BudgetExhausted) as refused:
        budget.acquire("secret_a", soon)
    assert 0.9 < refused.value.wait_seconds <= 1.0
    budget.acquire("secret_b", soon)  # another token has its own budget


def test_a_second_process_sees_the_same_budget(redis_server: object, redis_client: redis.Redis) -> None:
    first = TokenBudget(redis_client, per_minute=60, burst=0)
    other_connection = redis.Redis(
        connection_pool=redis.ConnectionPool(**redis_client.connection_pool.connection_kwargs)
    )
    second = TokenBudget(other_connection, per_minute=60, burst=0)
    first.acquire("secret_a", time.monotonic() + 0.1)
    with pytest.raises(BudgetExhausted):
        second.acquire("secret_a", time.monotonic() + 0.1)
    other_connection.close()


def test_retry_after_pauses_the_token_for_everyone(redis_client: redis.Redis) -> None:
    budget = TokenBudget(redis_client, per_minute=600, burst=5)
    budget.pause("secret_a", 7)
    with pytest.raises(BudgetExhausted) as refused:
        budget.acquire("secret_a", time.monotonic() + 1)
    assert 6.5 < refused.value.wait_seconds <= 7.0


def test_the_token_itself_is_never_stored(redis_client: redis.Redis) -> None:
    TokenBudget(redis_client).acquire("secret_abcdef", time.monotonic() + 1)
    assert [key.decode() for key in redis_client.keys("*")] == [token_key("secret_abcdef")]
    assert "secret_abcdef" not in token_key("secret_abcdef")
