"""`ecwid-relay instances`, `failed` and `redis check` against the real Redis, real worker, real API."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import redis

from tests.conftest import AUTH, WorkerProcess
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import CallbackServer, Reply, free_port
from workers import cli
from workers.settings import Settings


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """`ecwid-relay ARGS` in this process: (exit code, JSON lines printed, stderr)."""
    monkeypatch.setenv("RELAY_REDIS_URL", settings.redis_url or "")

    def invoke(*args: str) -> tuple[int, list[dict[str, object]], str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        # The receiver runs in this process too: its (non-JSON) log lines are not ours.
        return code, [orjson.loads(line) for line in out.splitlines() if line.startswith("{")], err

    return invoke


def test_instances_list_and_show_are_the_api_view(api: httpx.Client, run) -> None:  # type: ignore[no-untyped-def]
    first = create_custom(api, "https://hooks.example/a/secret-path?token=x", store_id=1003)
    second = create_custom(api, None, store_id=1004)
    paused = api.patch(
        f"/instances/{first['id']}", json={"delivery": {"paused": True}}, headers={"Authorization": AUTH}
    )
    assert paused.status_code == 200, paused.text
    code, listed, _ = run("instances", "list")
    assert code == 0
    assert [(i["id"], i["storeId"], i["eventsEnabled"], i["delivery"]) for i in listed] == [
        (first["id"], 1003, True, "paused"), (second["id"], 1004, False, "active")
    ]  # fmt: skip
    assert listed[0]["callback"] == "https://hooks.example"  # paths and queries may carry tokens
    assert [i["id"] for i in run("instances", "list", "--store", "1004")[1]] == [second["id"]]
    code, [shown], _ = run("instances", "show", str(first["id"]))
    assert code == 0
    assert shown == api.get(f"/instances/{first['id']}", headers={"Authorization": AUTH}).json()
    assert shown["delivery"]["paused"] is True and shown["delivery"]["resumesByHand"] is True
    assert run("instances", "show", "99") == (1, [], "ecwid-relay: no instance 99\n")


def test_failed_list_and_requeue(api: httpx.Client, callbacks: CallbackServer, worker: WorkerProcess, run) -> None:  # type: ignore[no-untyped-def]
    instance = create_custom(api, f"{callbacks.url}/hook")
    callbacks.script = [Reply(400, b"nope"), Reply(400, b"still no")]
    assert post_webhook(api, webhook("evt-f1")).status_code == 200
    callbacks.wait_for(1)

    def listed() -> list[dict[str, object]]:
        end = time.monotonic() + 10
        while not (found := run("failed", "list")[1]) and time.monotonic() < end:
            time.sleep(0.1)
        return found

    [entry] = listed()
    assert (entry["instanceId"], entry["eventId"], entry["storeId"]) == (instance["id"], "evt-f1", 1003)
    assert entry["queue"] == "relay-deliveries"
    assert "HTTP 400" in str(entry["reason"])
    code, [answer], _ = run("failed", "requeue", "--all")
    assert (code, answer) == (0, {"queue": "relay-deliveries", "requeued": [entry["id"]], "notFailed": []})
    second = callbacks.wait_for(2)[1]
    assert second.headers["elements-webhook-id"] == callbacks.received[0].headers["elements-webhook-id"]
    assert [e["id"] for e in listed()] == [entry["id"]]  # it failed again, and is back
    assert run("failed", "requeue", "no-such-job")[:2] == (1, [{"queue": "relay-deliveries", "requeued": [],
                                                                 "notFailed": ["no-such-job"]}])  # fmt: skip
    assert run("failed", "requeue")[0] == 2


def test_redis_check(redis_client: redis.Redis, run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    code, [report], _ = run("redis", "check")
    assert code == 0
    assert report["ok"] is True and report["problems"] == []
    assert (report["appendonly"], report["appendfsync"], report["maxmemory_policy"]) == ("yes", "always", "noeviction")
    assert str(report["version"]).startswith("6.2.")
    assert report["queues"]["inbox"] == 0  # type: ignore[index]
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        code, [report], _ = run("redis", "check")
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
    assert code == 1
    assert report["problems"] == ["maxmemory-policy is allkeys-lru, not noeviction: a full Redis drops events"]
    limit = redis_client.config_get("maxmemory")["maxmemory"]
    assert int(limit) > 0  # the Redis `dev` and the tests start has a limit
    redis_client.config_set("maxmemory", "0")
    try:
        code, [report], _ = run("redis", "check")
    finally:
        redis_client.config_set("maxmemory", limit)
    assert code == 1 and report["problems"][0].startswith("maxmemory is 0 (no limit)")
    monkeypatch.setenv("RELAY_REDIS_URL", f"redis://127.0.0.1:{free_port()}")
    assert run("redis", "check") == (2, [], "ecwid-relay: Redis is unreachable: ConnectionError\n")


def test_an_operator_pauses_and_resumes_an_instance(api: httpx.Client, run) -> None:  # type: ignore[no-untyped-def]
    instance = create_custom(api, "http://127.0.0.1:9/hook")
    code, [shown], _ = run("instances", "pause", str(instance["id"]))
    assert code == 0
    assert (shown["delivery"]["state"], shown["delivery"]["reason"], shown["delivery"]["resumesByHand"]) == (
        "paused", "paused by an operator (ecwid-relay instances pause)", True,
    )  # fmt: skip
    code, [shown], _ = run("instances", "resume", str(instance["id"]))
    assert (code, shown["delivery"]["state"]) == (0, "draining")
    assert run("instances", "resume", "99") == (1, [], "ecwid-relay: no instance 99\n")


def test_redis_errors_are_one_line_not_a_traceback(run, monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    code, [answer], _ = run("failed", "requeue", "--all")
    assert (code, answer["requeued"]) == (0, [])  # nothing failed: nothing to do, not an error
    monkeypatch.setenv("RELAY_REDIS_URL", f"redis://:hunter2-password@127.0.0.1:{free_port()}")
    for command in (["instances", "list"], ["failed", "list"], ["events", "list", "--instance", "1"]):
        assert run(*command) == (2, [], "ecwid-relay: Redis error: ConnectionError\n")
    monkeypatch.setenv("RELAY_REDIS_URL", (settings.redis_url or "").rsplit("/", 1)[0] + "/99")
    assert run("instances", "list") == (2, [], "ecwid-relay: Redis error: ResponseError\n")
