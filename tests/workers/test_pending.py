"""Per-URL pending lists (workers/pending.py), against a real Redis: one waiting runner per URL,
takes that survive a crash, give-backs in order, and a sweep for runners lost by hand."""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from workers import keys, pending
from workers.instances import Instance

URL = "endpoint:0123456789abcdef01234567"


def queue(client: redis.Redis) -> Queue:
    return Queue(keys.DELIVERY_QUEUE, connection=client, serializer=JSONSerializer)


def append(client: redis.Redis, entries: list[str]) -> None:
    def fill(pipe: redis.client.Pipeline, idle: set[str]) -> None:
        pending.append(pipe, queue(client), URL, entries, None, idle=URL in idle)

    pending.transaction(client, {URL}, fill)


def runners(client: redis.Redis) -> list[str]:
    return [job.decode() for job in client.lrange(f"rq:queue:{keys.DELIVERY_QUEUE}", 0, -1)]


def test_appends_share_one_waiting_runner_which_takes_all_when_it_starts(redis_client: redis.Redis) -> None:
    append(redis_client, [pending.entry("a", 1)])
    append(redis_client, [pending.entry("b", 2), pending.entry("c with spaces", 1)])
    [runner] = runners(redis_client)  # the second append found one waiting
    assert redis_client.get(pending.runner(URL)) == runner.encode()
    taken = pending.take(redis_client, URL, runner, 200, 1.0)
    assert taken == pending.Taken([("a", 1), ("b", 2), ("c with spaces", 1)], 0, crashes=0)
    assert pending.FIRST_TAKE == 10
    assert redis_client.exists(pending.runner(URL)) == 0  # started: no longer the waiting one
    append(redis_client, [pending.entry("d", 1)])
    assert len(runners(redis_client)) == 2  # so the next event gets a runner of its own
    # Run again after a crash, the runner delivers what it took, not what came since.
    again = pending.take(redis_client, URL, runner, 200, 1.0)
    assert again == pending.Taken([("a", 1), ("b", 2), ("c with spaces", 1)], 1, crashes=1)
    assert pending.carried(redis_client, runner) == [("a", 1), ("b", 2), ("c with spaces", 1)]
    assert pending.take(redis_client, URL, runner, 200, 1.0).crashes == 2  # and again
    with redis_client.pipeline(transaction=True) as pipe:
        pending.finish(pipe, URL, runner, [], 0)
        pipe.execute()
    assert redis_client.exists(pending.taken(runner), pending.crashes(runner)) == 0


def test_a_runner_starting_during_an_append_makes_the_append_queue_another(redis_client: redis.Redis) -> None:
    append(redis_client, [pending.entry("a", 1)])
    [first] = runners(redis_client)
    other = redis.Redis(connection_pool=redis_client.connection_pool)
    calls: list[set[str]] = []

    def fill(pipe: redis.client.Pipeline, idle: set[str]) -> None:
        calls.append(set(idle))
        if len(calls) == 1:
            pending.take(other, URL, first, 200, 1.0)  # the runner starts between WATCH and EXEC
        pending.append(pipe, queue(redis_client), URL, [pending.entry("b", 1)], None, idle=URL in idle)

    pending.transaction(redis_client, {URL}, fill)
    assert calls == [set(), {URL}]  # tried again, and saw that no runner waits any more
    assert len(runners(redis_client)) == 2
    assert redis_client.lrange(pending.pending(URL), 0, -1) == [b"1 b"]  # appended once


def test_a_slow_url_gets_small_takes_and_what_is_left_goes_back_to_the_head(redis_client: redis.Redis) -> None:
    append(redis_client, [pending.entry(f"e{n}", 1) for n in range(14)])
    first = pending.take(redis_client, URL, "run-w", 200, 1.0)  # the pace is not known yet: a few
    # It sent e0 to e3, and gives the rest back to the head, in order.
    assert (len(first.entries), first.left) == (pending.FIRST_TAKE, 4)
    with redis_client.pipeline(transaction=True) as pipe:
        pending.finish(pipe, URL, "run-w", [entry for entry in redis_client.lrange(pending.taken("run-w"), 4, -1)], 0)
        pipe.execute()
    with redis_client.pipeline(transaction=True) as pipe:
        pending.finish(pipe, URL, "run-x", [], 250.0)  # a runner that took 250 ms per request
        pipe.execute()
    taken = pending.take(redis_client, URL, "run-y", 200, 1.0)
    assert ([text for text, _ in taken.entries], taken.left) == (["e4", "e5", "e6", "e7"], 6)  # 1 s / 250 ms
    with redis_client.pipeline(transaction=True) as pipe:
        pending.finish(pipe, URL, "run-y", [pending.entry("e6", 1), pending.entry("e7", 1)], 400.0)
        pipe.execute()
    assert [raw.decode() for raw in redis_client.lrange(pending.pending(URL), 0, 2)] == ["1 e6", "1 e7", "1 e8"]
    assert redis_client.exists(pending.taken("run-y")) == 0
    assert float(redis_client.get(pending.pace(URL)) or 0) == 400.0


def test_the_sweep_requeues_a_runner_lost_by_hand_and_forgets_empty_urls(redis_client: redis.Redis) -> None:
    config = {"event.notification.callback.url": "http://127.0.0.1:9/h", "event.notification.concurrency": "2"}
    instance = Instance(1, "owner", "n", "t", "custom", 1003, config)
    redis_client.set(keys.instance(1), instance.dumps())
    append(redis_client, [pending.entry("a", 1)])
    redis_client.delete(f"rq:queue:{keys.DELIVERY_QUEUE}", pending.runner(URL))  # `rq empty`, and the key expired
    redis_client.sadd(pending.URLS, "endpoint:gone")
    assert pending.sweep(redis_client, queue(redis_client)) == 1
    assert len(runners(redis_client)) == 1 and redis_client.exists(pending.runner(URL)) == 1
    assert redis_client.smembers(pending.URLS) == {URL.encode()}
    assert pending.sweep(redis_client, queue(redis_client)) == 0  # a runner waits now


def test_runners_take_nothing_until_every_failure_handed_off_is_decided(redis_client: redis.Redis) -> None:
    """A batch hands a failure to a job of its own (workers/batches.py); events that came meanwhile
    wait for that job's decision, even if a runner was queued for them before it."""
    config = {"event.notification.callback.url": "http://127.0.0.1:9/h"}
    redis_client.set(keys.instance(1), Instance(1, "owner", "n", "t", "custom", 1003, config).dumps())
    append(redis_client, [pending.entry("after-the-failure", 1)])
    [queued] = runners(redis_client)  # queued while the failing batch was still on the wire
    with redis_client.pipeline(transaction=True) as pipe:
        pending.awaiting(pipe, URL, ["dlv-a", "dlv-b"])  # the batch's closing transaction
        pipe.execute()
    assert 0 < redis_client.ttl(pending.undecided(URL)) <= pending.RUNNER_TTL

    held = pending.take(redis_client, URL, queued, 200, 1.0)
    assert held == pending.Taken([], 1, crashes=0, held=True)
    assert redis_client.get(pending.runner(URL)) == b"held"  # so the dispatcher queues no runner meanwhile
    assert 0 < redis_client.ttl(pending.runner(URL)) <= pending.HELD_SECONDS
    append(redis_client, [pending.entry("later still", 1)])
    assert runners(redis_client) == [queued]

    pending.decided(redis_client, queue(redis_client), URL, "dlv-a", None)
    assert redis_client.get(pending.runner(URL)) == b"held"  # dlv-b has not decided yet
    assert runners(redis_client) == [queued]
    instance = Instance.loads(redis_client.get(keys.instance(1)) or b"")
    pending.decided(redis_client, queue(redis_client), URL, "dlv-b", instance)
    [_, successor] = runners(redis_client)  # the last decision queued the next runner
    assert redis_client.get(pending.runner(URL)) == successor.encode()
    assert redis_client.exists(pending.undecided(URL)) == 0
    taken = pending.take(redis_client, URL, successor, 200, 1.0)
    assert taken == pending.Taken([("after-the-failure", 1), ("later still", 1)], 0, crashes=0)


def test_a_runner_run_again_after_a_crash_delivers_what_it_took_even_while_held(redis_client: redis.Redis) -> None:
    append(redis_client, [pending.entry("taken before", 1)])
    [runner] = runners(redis_client)
    assert pending.take(redis_client, URL, runner, 200, 1.0).entries == [("taken before", 1)]
    with redis_client.pipeline(transaction=True) as pipe:
        pending.awaiting(pipe, URL, ["dlv-other-runner"])  # another runner of the URL handed a failure off
        pipe.execute()
    again = pending.take(redis_client, URL, runner, 200, 1.0)
    assert again == pending.Taken([("taken before", 1)], 0, crashes=1, held=False)


def test_a_decision_with_nothing_pending_queues_no_runner(redis_client: redis.Redis) -> None:
    with redis_client.pipeline(transaction=True) as pipe:
        pending.awaiting(pipe, URL, ["dlv-a"])
        pipe.execute()
    assert pending.take(redis_client, URL, pending.runner_job_id(URL), 200, 1.0).held
    pending.decided(redis_client, queue(redis_client), URL, "dlv-a", None)
    assert runners(redis_client) == [] and redis_client.exists(pending.runner(URL), pending.undecided(URL)) == 0
