"""A runner that waits for more before it ends (workers/lingering.py), against a real Redis."""

from __future__ import annotations

import threading
import time

import redis

from tests.workers.test_pending import URL, append, queue, runners
from workers import keys, lingering, pending


def _arrives_later(client: redis.Redis, entry: str, after: float) -> threading.Thread:
    def push() -> None:
        time.sleep(after)
        append(client, [entry])

    thread = threading.Thread(target=push)
    thread.start()
    return thread


def test_a_lingering_runner_stands_for_the_url_and_takes_what_comes(redis_client: redis.Redis) -> None:
    me = pending.runner_job_id(URL)
    later = _arrives_later(redis_client, pending.entry("late", 1), 0.2)
    assert lingering.linger(redis_client, queue(redis_client), URL, me, 5.0) is True
    later.join()
    assert runners(redis_client) == []  # the append found this runner waiting: it queued none
    assert redis_client.get(pending.runner(URL)) == me.encode()
    assert pending.take(redis_client, URL, me, 200, 1.0).entries == [("late", 1)]
    assert redis_client.exists(pending.runner(URL)) == 0


def test_a_lingering_runner_that_got_nothing_frees_the_url(redis_client: redis.Redis) -> None:
    me = pending.runner_job_id(URL)
    assert lingering.linger(redis_client, queue(redis_client), URL, me, 0.05) is False
    assert redis_client.exists(pending.runner(URL)) == 0
    append(redis_client, [pending.entry("next", 1)])
    assert len(runners(redis_client)) == 1  # so the next event gets a runner of its own


def test_a_lingering_runner_yields_to_another_urls_job_at_once(redis_client: redis.Redis) -> None:
    redis_client.rpush(f"rq:queue:{keys.DELIVERY_QUEUE}", pending.runner_job_id("endpoint:another"))
    started = time.monotonic()
    assert lingering.linger(redis_client, queue(redis_client), URL, pending.runner_job_id(URL), 5.0) is False
    assert time.monotonic() - started < 2.5  # not its whole 5 s
    assert redis_client.exists(pending.runner(URL)) == 0


def test_a_runner_queued_for_the_same_url_does_not_end_the_wait(redis_client: redis.Redis) -> None:
    append(redis_client, [pending.entry("first", 1)])
    [queued] = runners(redis_client)
    pending.take(redis_client, URL, pending.runner_job_id(URL), 200, 1.0)  # another runner took it meanwhile
    redis_client.set(pending.runner(URL), queued)  # the queued one still stands for the URL
    later = _arrives_later(redis_client, pending.entry("late", 1), 0.2)
    me = pending.runner_job_id(URL)
    assert lingering.linger(redis_client, queue(redis_client), URL, me, 5.0) is True
    later.join()
    assert redis_client.get(pending.runner(URL)) == queued.encode()  # not taken over, not cleared
    assert pending.take(redis_client, URL, me, 200, 1.0).entries == [("late", 1)]


def test_a_lingering_runner_stands_for_the_url_only_for_its_wait(redis_client: redis.Redis) -> None:
    """If its worker dies while it waits, the URL is free again a second after the wait would have
    ended, not after RUNNER_TTL (ten minutes)."""
    me = pending.runner_job_id(URL)
    later = _arrives_later(redis_client, pending.entry("late", 1), 0.1)
    assert lingering.linger(redis_client, queue(redis_client), URL, me, 0.5) is True
    later.join()
    assert 0 < redis_client.pttl(pending.runner(URL)) <= 1500
