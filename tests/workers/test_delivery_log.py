"""The event log stays bounded: entries expire, and an instance keeps at most so many."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import redis
from standardwebhooks.webhooks import Webhook

from tests.conftest import AUTH, ROOT, WorkerProcess, running_receiver, worker_env
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Reply
from workers import keys
from workers.delivery_log import MAX_ATTEMPTS, DeliveryLog, Outcome, attempt_entry
from workers.inbox import InboxItem
from workers.settings import Settings
from workers.signatures import elements_signature_matches

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def item(n: int) -> InboxItem:
    return InboxItem("webhook", 1003, f"evt-{n}", 1_700_000_000, "order.created", 42, None, (7,), time.time(), "{}")


def test_received_records_are_written_whole_and_replace_an_earlier_record(redis_client: redis.Redis) -> None:
    log = DeliveryLog(redis_client, retention=3600)
    first, second = item(1), item(2)
    stale = first.notification_id(7)
    redis_client.hset(keys.delivery(stale), mapping={"status": "FAILED", "reason": "old", "next_attempt": 1})
    redis_client.rpush(keys.delivery_attempts(stale), b"{}")
    with redis_client.pipeline(transaction=True) as pipe:
        log.received_many(pipe, [(first, 7, "job-1"), (second, 8, "url:http://127.0.0.1:1")])
        pipe.execute()
    records = [redis_client.hgetall(keys.delivery(i.notification_id(n))) for i, n in ((first, 7), (second, 8))]
    created = records[0][b"created"]
    summary = b'[{"elementKey":"ecwid","hubKey":"ecommerce","objectType":"orders","objectId":"42",' \
              b'"eventType":"CREATED","date":"2023-11-14T22:13:20Z"}]'  # fmt: skip
    assert records == [
        {b"id": stale.encode(), b"instance": b"7", b"status": b"RECEIVED", b"created": created,
         b"updated": created, b"event": b"evt-1", b"kind": b"webhook", b"store": b"1003", b"summary": summary,
         b"job": b"job-1", b"replays": b"0"},
        {b"id": second.notification_id(8).encode(), b"instance": b"8", b"status": b"RECEIVED", b"created": created,
         b"updated": created, b"event": b"evt-2", b"kind": b"webhook", b"store": b"1003", b"summary": summary,
         b"job": b"url:http://127.0.0.1:1", b"replays": b"0"},
    ]  # fmt: skip
    assert redis_client.exists(keys.delivery_attempts(stale)) == 0
    assert 3590 <= redis_client.ttl(keys.delivery(stale)) <= 3600
    assert redis_client.zrange(keys.instance_deliveries(8), 0, -1) == [second.notification_id(8).encode()]


def test_an_instance_keeps_at_most_its_cap_and_the_oldest_records_go(redis_client: redis.Redis) -> None:
    log = DeliveryLog(redis_client, retention=3600, max_per_instance=3)
    for n in range(5):
        with redis_client.pipeline(transaction=True) as pipe:
            log.received(pipe, item(n), 7, f"job-{n}")
            pipe.execute()
        time.sleep(0.002)  # distinct creation times
    kept = [m.decode() for m in redis_client.zrange(keys.instance_deliveries(7), 0, -1)]
    assert kept == [item(n).notification_id(7) for n in (2, 3, 4)]
    assert redis_client.exists(keys.delivery(item(0).notification_id(7))) == 0  # deleted, not left to expire
    assert redis_client.exists(keys.delivery(item(4).notification_id(7))) == 1
    assert 3590 < redis_client.ttl(keys.delivery(item(4).notification_id(7))) <= 3600


def _script_commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, those a script makes included."""
    stats = client.info("commandstats")
    skip = {"config", "info", "evalsha", "eval", "multi", "exec", "script"}
    return {name[8:]: int(s["calls"]) for name, s in stats.items() if name[8:] not in skip}


def test_indexing_within_the_cap_costs_three_commands_an_instance(redis_client: redis.Redis) -> None:
    log = DeliveryLog(redis_client, retention=3600, max_per_instance=3)
    with redis_client.pipeline(transaction=True) as pipe:
        log.received_many(pipe, [(item(1), 7, "job-1")])
        pipe.execute()
    redis_client.config_resetstat()
    with redis_client.pipeline(transaction=True) as pipe:
        log.received_many(pipe, [(item(2), 7, "job-2"), (item(3), 7, "job-3")])
        pipe.execute()
    # Per record: replace, write, expire. Per instance: add, look for expired entries, look past the
    # cap (one ZRANGE, not ZCARD and then ZRANGE), expire.
    assert _script_commands(redis_client) == {
        "del": 2, "hset": 2, "expire": 2, "zadd": 1, "zrangebyscore": 1, "zrange": 1, "pexpire": 1,
    }  # fmt: skip
    assert redis_client.zcard(keys.instance_deliveries(7)) == 3


def test_an_outcome_soon_after_receipt_leaves_the_index_alone_a_later_one_extends_it(
    redis_client: redis.Redis,
) -> None:
    log = DeliveryLog(redis_client, retention=3600)  # a slack of 60 s
    fresh, late, unknown = item(1), replace(item(2), received=time.time() - 31), item(3)
    with redis_client.pipeline(transaction=True) as pipe:
        log.received_many(pipe, [(fresh, 7, "job-1"), (late, 8, "job-2"), (unknown, 9, "job-3")])
        pipe.execute()
    for instance_id in (7, 8, 9):
        assert 3_659_000 <= redis_client.pttl(keys.instance_deliveries(instance_id)) <= 3_660_000
        redis_client.pexpire(keys.instance_deliveries(instance_id), 5_000)  # as if indexed an hour ago
    log.finish([
        Outcome(fresh.notification_id(7), 7, fresh.dumps().decode(), "NOTIFIED", received=fresh.received),
        Outcome(late.notification_id(8), 8, late.dumps().decode(), "NOTIFIED", received=late.received),
        Outcome(unknown.notification_id(9), 9, unknown.dumps().decode(), "NOTIFIED"),
    ])  # fmt: skip
    # Received 31 s ago, past half the slack, or when is not known: the index is made to outlive the
    # record again. Received just now: its indexing gave the index more than the record's retention.
    assert [redis_client.ttl(keys.instance_deliveries(i)) for i in (8, 9)] == [3600, 3600]
    assert 4_000 < redis_client.pttl(keys.instance_deliveries(7)) <= 5_000
    assert [redis_client.ttl(keys.delivery(i.notification_id(n))) for i, n in ((fresh, 7), (late, 8))] == [3600, 3600]


def test_retention_counts_from_the_last_change_and_expired_records_are_not_revived(
    redis_client: redis.Redis,
) -> None:
    log = DeliveryLog(redis_client, retention=2)
    with redis_client.pipeline(transaction=True) as pipe:
        log.received(pipe, item(0), 7, "job-0")
        pipe.execute()
    first = item(0).notification_id(7)
    time.sleep(1.5)
    log.mark(first, 7, item(0).dumps(), "PAUSED", "waiting")  # a change: two more seconds from now
    time.sleep(1.0)
    with redis_client.pipeline(transaction=True) as pipe:
        log.received(pipe, item(1), 7, "job-1")  # indexing sweeps what is past the retention...
        pipe.execute()
    index = [m.decode() for m in redis_client.zrange(keys.instance_deliveries(7), 0, -1)]
    assert index == [first, item(1).notification_id(7)]  # ...but the first entry changed 1 s ago
    assert redis_client.hget(keys.delivery(first), "status") == b"PAUSED"
    time.sleep(1.2)
    assert redis_client.exists(keys.delivery(first)) == 0  # expired by Redis itself
    log.mark(first, 7, item(0).dumps(), "FAILED", "too late")
    with redis_client.pipeline(transaction=True) as pipe:
        log.resumed(pipe, first, "job-x")
        pipe.execute()
    assert redis_client.exists(keys.delivery(first)) == 0  # no half-written record comes back


def test_entries_expire_after_the_retention(
    settings: Settings, callbacks: CallbackServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    short = replace(settings, event_retention=2)
    process = WorkerProcess(short, tmp_path / "worker.log")
    try:
        with running_receiver(short) as running, running.client() as api:
            instance = create_custom(api, f"{callbacks.url}/hook")
            assert post_webhook(api, webhook("evt-1")).status_code == 200
            callbacks.wait_for(1)
            path = f"/instances/{instance['id']}/events/evt-1"
            end = time.monotonic() + 5
            while api.get(path, headers={"Authorization": AUTH}).json().get("status") != "NOTIFIED":
                assert time.monotonic() < end
                time.sleep(0.05)
            assert redis_client.keys(keys.PREFIX + "delivery:*") != []
            time.sleep(2.5)  # Redis itself expires them: nothing to clean up
            gone = api.get(path, headers={"Authorization": AUTH})
            assert (gone.status_code, gone.json()["message"]) == (
                404, f"no event 'evt-1' in instance {instance['id']}'s log (entries are kept for 2 seconds)"
            )  # fmt: skip
            assert redis_client.keys(keys.PREFIX + "delivery:*") == []
            assert redis_client.exists(keys.instance_deliveries(instance["id"])) == 0
    finally:
        process.stop()


def test_standard_webhooks_signatures_verify_with_the_reference_library(
    api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook", **{
        "event.notification.signature.scheme": "both", "event.notification.standardwebhooks.secret": WHSEC,
        "event.notification.signature.key": "elements-key-0123456789"})  # fmt: skip
    assert instance["configuration"]["event.notification.standardwebhooks.secret"] == "********"
    callbacks.script = [Reply(503)]
    assert post_webhook(api, webhook("evt-1")).status_code == 200
    first, retried = callbacks.wait_for(2, timeout=15)
    for request in (first, retried):
        assert request.headers["webhook-id"] == request.headers["elements-webhook-id"]
        Webhook(WHSEC).verify(request.body, request.headers)  # raises when it does not verify
        signature = request.headers["elements-webhook-signature"]
        assert elements_signature_matches(signature, "elements-key-0123456789", request.body)
    assert first.headers["webhook-timestamp"] != retried.headers["webhook-timestamp"]  # fresh per attempt
    assert retried.headers["webhook-id"] == first.headers["webhook-id"]


def test_signature_scheme_settings_are_checked(api: httpx.Client, callbacks: CallbackServer) -> None:
    def create(**config: str) -> httpx.Response:
        body = {"element": {"key": "ecwid"}, "configuration": {
            "ecwid.store.id": "1003", "ecwid.order.key": "k", "ecwid.product.key": "k", **config}}  # fmt: skip
        return api.post("/instances", json=body, headers={"Authorization": AUTH})

    missing = create(**{"event.notification.signature.scheme": "standard"})
    assert (missing.status_code, missing.json()["message"]) == (400, (
        "event.notification.standardwebhooks.secret (whsec_...) is required when "
        "event.notification.signature.scheme is standard or both"))  # fmt: skip
    for bad in ("not-a-secret", "whsec_c2hvcnQ=", "whsec_!!!!"):
        response = create(**{"event.notification.standardwebhooks.secret": bad})
        assert (response.status_code, response.json()["message"]) == (
            400, "event.notification.standardwebhooks.secret must be whsec_ followed by 24 to 64 base64-encoded bytes"
        )  # fmt: skip
    wrong = create(**{"event.notification.signature.scheme": "hmac"})
    assert wrong.json()["message"] == "event.notification.signature.scheme must be one of elements, standard, both"
    assert api.get("/instances", headers={"Authorization": AUTH}).json() == []


def test_the_cli_tells_what_happened_and_replays(
    api: httpx.Client, settings: Settings, callbacks: CallbackServer, worker: WorkerProcess
) -> None:
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(409, b"conflict")]
    assert post_webhook(api, webhook("evt-1")).status_code == 200
    callbacks.wait_for(1)

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "workers.cli", *args, "--instance", str(instance["id"])]
        return subprocess.run(command, env=worker_env(settings), cwd=ROOT, capture_output=True, timeout=30)

    end = time.monotonic() + 5
    while (shown := cli("events", "show", "evt-1")).returncode != 0 or b'"FAILED"' not in shown.stdout:
        assert time.monotonic() < end, shown.stderr
        time.sleep(0.1)
    story = orjson.loads(shown.stdout)
    assert (story["status"], story["reason"]) == ("FAILED", "HTTP 409: the endpoint rejected the notification")
    listed = cli("events", "list", "--status", "FAILED")
    assert [orjson.loads(line)["eventId"] for line in listed.stdout.splitlines()] == ["evt-1"]
    replayed = cli("replay", "--status", "FAILED")
    assert orjson.loads(replayed.stdout) == {"instanceId": instance["id"], "queued": 1, "ids": [story["id"]]}
    again = callbacks.wait_for(2)[1]
    assert again.headers["elements-webhook-id"] == story["id"]
    missing = cli("events", "show", "evt-404")
    assert missing.returncode == 1 and b"no event 'evt-404'" in missing.stderr


def test_outcomes_of_a_batch_are_written_in_one_call(redis_client: redis.Redis) -> None:
    log = DeliveryLog(redis_client, retention=3600)
    with redis_client.pipeline(transaction=True) as pipe:
        log.received_many(pipe, [(item(n), 7, f"job-{n}") for n in range(2)])
        pipe.execute()
    first, second, gone = (item(n).notification_id(7) for n in range(3))
    redis_client.expire(keys.instance_deliveries(7), 10)
    for _ in range(MAX_ATTEMPTS):
        log.attempted(
            first, 7, "queued", attempt_entry(503, None, 1.0), "DISPATCHED", next_attempt=5, reason="HTTP 503"
        )
    log.finish([
        Outcome(first, 7, "item-0", "NOTIFIED", attempt=attempt_entry(200, None, 2.5, b"ok")),
        Outcome(second, 7, "item-1", "SKIPPED", "events not enabled"),
        Outcome(gone, 7, "item-2", "NOTIFIED", attempt=attempt_entry(200, None, 1.0)),
    ])  # fmt: skip
    record = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.delivery(first)).items()}
    assert (record["status"], record["reason"], record["next_attempt"], record["item"]) == (
        "NOTIFIED",
        "",
        "",
        "item-0",
    )
    attempts = [orjson.loads(raw) for raw in redis_client.lrange(keys.delivery_attempts(first), 0, -1)]
    assert len(attempts) == MAX_ATTEMPTS and (attempts[-1]["status"], attempts[-1]["body"]) == (200, "ok")
    assert redis_client.hmget(keys.delivery(second), "status", "reason", "item") == [
        b"SKIPPED", b"events not enabled", b"item-1"
    ]  # fmt: skip
    assert redis_client.exists(keys.delivery_attempts(second)) == 0
    assert redis_client.exists(keys.delivery(gone), keys.delivery_attempts(gone)) == 0  # never received: not made
    assert 3590 < redis_client.ttl(keys.instance_deliveries(7)) <= 3600  # the index lives as long as its records


def test_a_record_stays_a_compact_hash_with_a_webhook_sized_item(redis_client: redis.Redis) -> None:
    """The project's Redis keeps records as ziplists (workers/redis_server.py): a queued event's
    record costs a few hundred bytes, not the 1.3 KB of a hashtable, and so does a delivered one."""
    log = DeliveryLog(redis_client, retention=3600)
    queued = replace(item(0), raw=orjson.dumps({"note": "x" * 1024}).decode())
    with redis_client.pipeline(transaction=True) as pipe:
        log.received_many(pipe, [(queued, 7, "job-0")])
        pipe.execute()
    notification = queued.notification_id(7)
    assert redis_client.object("encoding", keys.delivery(notification)) == b"ziplist"
    assert (redis_client.memory_usage(keys.delivery(notification)) or 0) < 500
    log.finish([Outcome(notification, 7, queued.dumps(), "NOTIFIED", attempt=attempt_entry(200, None, 1.0))])
    assert redis_client.object("encoding", keys.delivery(notification)) == b"ziplist"
