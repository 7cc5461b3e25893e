"""Scenario 7: forged, borrowed and replayed signatures get 401 and forward nothing;
a replayed valid webhook is accepted once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from tests.conftest import CLIENT_SECRET
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.ledger import LedgerServer
from tests.support.processes import Receiver, Worker
from tests.support.servers import FakeEcwidOAuth
from tests.test_end_to_end import APP_SECRET, create_oauth_instance
from workers.settings import Settings
from workers.signatures import ecwid_signature

OTHER_STORE = 2000


def test_bad_signatures_are_401_and_forward_nothing(
    loopback_settings: Settings, redis_client: redis.Redis, fake_ecwid: FakeEcwidOAuth, tmp_path: Path
) -> None:
    ledger = LedgerServer()
    receiver = Receiver(loopback_settings, tmp_path / "receiver.log")
    worker = Worker(loopback_settings, tmp_path / "worker.log", "sig-w")
    try:
        with receiver.client() as api:
            # Store 1003 is connected through an app of its own (OAuth2, APP_SECRET);
            # store 2000 through the relay's global app (CLIENT_SECRET).
            assert create_oauth_instance(api, ledger.url).status_code == 200
            create_custom(api, ledger.url, store_id=OTHER_STORE)

            def post(body: dict[str, object], signature: str | None) -> tuple[int, dict[str, object]]:
                headers = {"Content-Type": "application/json"}
                if signature is not None:
                    headers["X-Ecwid-Webhook-Signature"] = signature
                response = api.post("/events/ecwid", content=json.dumps(body), headers=headers)
                return response.status_code, response.json()

            genuine = webhook("sig-genuine", store_id=OTHER_STORE)
            genuine_signature = ecwid_signature(CLIENT_SECRET, "1700000000", "sig-genuine")
            forgeries = {
                "missing": (webhook("sig-1", store_id=OTHER_STORE), None),
                "empty": (webhook("sig-2", store_id=OTHER_STORE), ""),
                "wrong": (webhook("sig-3", store_id=OTHER_STORE), "c2lnbmF0dXJlIGZvcmdlZCBieSBzb21lb25lIGVsc2U="),
                "another store's secret": (webhook("sig-4", store_id=OTHER_STORE),
                                           ecwid_signature(APP_SECRET, "1700000000", "sig-4")),
                "an unknown app's secret": (webhook("sig-5", store_id=1003),
                                            ecwid_signature(CLIENT_SECRET + "x", "1700000000", "sig-5")),
                "replayed with another eventId": (webhook("sig-6", store_id=OTHER_STORE), genuine_signature),
                "replayed with another eventCreated": ({**genuine, "eventCreated": 1700000001}, genuine_signature),
                "global secret for an OAuth store": (webhook("sig-7", store_id=1003),
                                                     ecwid_signature(CLIENT_SECRET, "1700000000", "sig-7")),
            }  # fmt: skip
            refused = {}
            for name, (body, signature) in forgeries.items():
                status, answer = post(body, signature)
                refused[name] = status
                assert status == 200 or set(answer) == {"requestId", "message"}, (name, answer)
                assert CLIENT_SECRET not in json.dumps(answer) and APP_SECRET not in json.dumps(answer)
            # An OAuth store's events verified by the global secret are not the OAuth instance's:
            # they verify, but reach nobody (200, no subscriber), so they are listed apart.
            assert refused.pop("global secret for an OAuth store") == 200
            assert set(refused.values()) == {401}, refused

            replays = [post_webhook(api, genuine).json()["message"] for _ in range(5)]
            moved = post_webhook(api, {**genuine, "storeId": 1003}).json()["message"]
            assert replays[0] == "accepted"
            assert all(m.startswith("duplicate") for m in replays[1:]), replays
            assert "not forwarded" in moved, moved  # the signature says nothing of storeId
            ledger.wait_delivered(["sig-genuine"], timeout=30)
            end = time.monotonic() + 10
            while redis_client.llen("relay:inbox") or redis_client.llen("rq:queue:relay-deliveries"):
                assert time.monotonic() < end
                time.sleep(0.1)
            time.sleep(1.0)
        print(f"\n[faults] signatures: refused_401={len(refused)} accepted=1 replays_deduplicated=5 "
              f"delivered={len(ledger.arrivals)}")  # fmt: skip
        assert [a.event_id for a in ledger.arrivals] == ["sig-genuine"]
        seen = sorted(k.decode() for k in redis_client.keys("relay:seen:*"))
        assert seen == ["relay:seen:sig-genuine"], seen  # nothing of a refused webhook was stored
    finally:
        worker.terminate()
        receiver.terminate()
        ledger.close()
