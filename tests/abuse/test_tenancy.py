"""Scenario 9: one user can neither see, change nor replay another user's instances or events;
bad credentials get 401 or 404, and the answers reveal nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.conftest import AUTH, ORG, OTHER_AUTH, USER
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.ledger import LedgerServer
from tests.support.processes import Receiver, Worker
from workers.settings import Settings

SECRET_CONFIG = {"event.notification.signature.key": "tenant-a-signing-key-0123456789", "ecwid.ion.enabled": True,
                 "ecwid.ion.secret": "tenant-a-ion-secret-0123456789"}  # fmt: skip


def without_request_id(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"requestId", "message"}, body
    return response.status_code, body["message"]


def test_users_cannot_reach_each_others_instances_or_events(
    loopback_settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    ledger = LedgerServer()
    receiver = Receiver(loopback_settings, tmp_path / "receiver.log")
    worker = Worker(loopback_settings, tmp_path / "worker.log", "tenancy-w")
    try:
        with receiver.client() as api:
            mine = create_custom(api, ledger.url, **SECRET_CONFIG)
            named = api.patch(
                f"/instances/{mine['id']}", json={"name": "tenant A private name"}, headers={"Authorization": AUTH}
            )
            assert named.status_code == 200
            theirs = create_custom(api, ledger.url, store_id=2000, auth=OTHER_AUTH)
            a, b = mine["id"], theirs["id"]
            assert post_webhook(api, webhook("tenant-a-1")).status_code == 200
            ledger.wait_delivered(["tenant-a-1"], timeout=30)
            [event] = api.get(f"/instances/{a}/events", headers={"Authorization": AUTH}).json()
            before_instance = api.get(f"/instances/{a}", headers={"Authorization": AUTH}).json()
            before_events = api.get(f"/instances/{a}/events/{event['id']}", headers={"Authorization": AUTH}).json()
            ghost = 987654

            # The other user, with valid credentials, sees A's instance as if it did not exist.
            as_b = {"Authorization": OTHER_AUTH}
            attempts: dict[str, tuple[str, str, Any]] = {
                "get": ("GET", "/instances/{id}", None),
                "put": ("PUT", "/instances/{id}", {"name": "taken", "configuration": {}}),
                "patch": ("PATCH", "/instances/{id}", {"configuration": {"event.notification.callback.url":
                                                                         "https://evil.example/"}}),
                "delete": ("DELETE", "/instances/{id}", None),
                "events": ("GET", "/instances/{id}/events", None),
                "event": ("GET", "/instances/{id}/events/" + event["id"], None),
                "event by Ecwid id": ("GET", "/instances/{id}/events/tenant-a-1", None),
                "replay": ("POST", "/instances/{id}/events/" + event["id"] + "/replay", None),
                "bulk replay": ("POST", "/instances/{id}/events/replay?status=NOTIFIED", None),
            }  # fmt: skip
            for name, (method, path, body) in attempts.items():
                on_a = api.request(method, path.format(id=a), json=body, headers=as_b)
                on_ghost = api.request(method, path.format(id=ghost), json=body, headers=as_b)
                assert on_a.status_code == 404, (name, on_a.status_code, on_a.text)
                # The same answer as for an id that does not exist, but for the id itself.
                assert without_request_id(on_a) == (404, without_request_id(on_ghost)[1].replace(str(ghost), str(a)))
                for leak in ("tenant A private name", mine["token"], "1003", event["id"], ledger.url):
                    assert leak not in on_a.text, (name, leak)
            listing = api.get("/instances", headers=as_b).json()
            assert [i["id"] for i in listing] == [b]

            # Bad credentials: 401, saying what is wrong and echoing nothing.
            bad = {
                "wrong organization": f"User {USER}, Organization {ORG}x",
                "wrong user": f"User {USER}x, Organization {ORG}",
                "user only": f"User {USER}",
                "organization only": f"Organization {ORG}",
                "swapped": f"User {ORG}, Organization {USER}",
                "bearer": f"Bearer {USER}",
                "basic": "Basic dXNlcjpwYXNz",
                "empty": "",
                "commas": ",,,",
                "element token of A": f"Element {mine['token']}",
            }
            for name, header in bad.items():
                for method, path in (
                    ("GET", f"/instances/{a}"),
                    ("GET", "/instances"),
                    ("DELETE", f"/instances/{a}"),
                    ("GET", f"/instances/{a}/events"),
                    ("POST", f"/instances/{a}/events/replay"),
                ):
                    response = api.request(method, path, headers={"Authorization": header} if header else {})
                    assert response.status_code == 401, (name, method, path, response.status_code)
                    status, message = without_request_id(response)
                    for secret in (USER, ORG, mine["token"]):
                        assert secret not in message
            # An instance token used on another instance's polling-results endpoint.
            results = api.post(f"/events/ecwid/{b}?objectType=orders", json={"items": []},
                               headers={"Authorization": f"Element {mine['token']}"})  # fmt: skip
            assert without_request_id(results)[0] == 401
            assert mine["token"] not in results.text

            time.sleep(1.0)  # a replay, had one been queued, would be dispatched by now
            after_instance = api.get(f"/instances/{a}", headers={"Authorization": AUTH}).json()
            after_events = api.get(f"/instances/{a}/events/{event['id']}", headers={"Authorization": AUTH}).json()
        assert after_instance == before_instance
        assert after_events == before_events
        assert len(ledger.arrivals) == 1
        print(f"\n[faults] tenancy: cross-user attempts={len(attempts)} all 404; bad credentials={len(bad)} all 401;"
              f" replays leaked=0 changes leaked=0")  # fmt: skip
    finally:
        worker.terminate()
        receiver.terminate()
        ledger.close()
