"""Scenario 11: every log line of a full run, at debug level, is free of every secret."""

from __future__ import annotations

import base64
import time
from dataclasses import replace
from pathlib import Path

import redis

from tests.conftest import AUTH, CLIENT_SECRET, ORG, OTHER_AUTH, USER
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.ledger import Answer, LedgerServer
from tests.support.processes import Receiver, Worker
from tests.support.servers import FakeEcwidOAuth
from tests.test_end_to_end import APP_SECRET, SIGNING_KEY, create_oauth_instance
from workers.settings import Settings
from workers.signatures import ecwid_signature

STANDARD_KEY = base64.b64encode(b"standard-webhooks-key-0123456789").decode()
LEGACY_ORDER_KEY = "legacy-order-key-5f1e2d3c4b5a"
LEGACY_PRODUCT_KEY = "legacy-product-key-9a8b7c6d5e"
ION_SECRET = "ion-cannon-secret-77aa88bb99cc"
API_TOKEN = "secret_custom_app_token_0a1b2c3d"
PATH_TOKEN = "T0KEN-IN-THE-CALLBACK-PATH-123"
QUERY_TOKEN = "t0ken-in-the-callback-query-456"


def test_no_secret_reaches_the_logs(
    loopback_settings: Settings, redis_client: redis.Redis, fake_ecwid: FakeEcwidOAuth, tmp_path: Path
) -> None:
    settings = replace(loopback_settings, log_level="debug")
    # The first attempt of every event fails, so failures are logged too.
    ledger = LedgerServer(lambda event_id, attempt: Answer(500) if attempt == 1 else Answer())
    receiver = Receiver(settings, tmp_path / "receiver.log")
    worker = Worker(settings, tmp_path / "worker.log", "secrets-w")
    tokens: list[str] = []
    try:
        with receiver.client() as api:
            oauth = create_oauth_instance(api, f"{ledger.url}/{PATH_TOKEN}?token={QUERY_TOKEN}")
            assert oauth.status_code == 200, oauth.text
            tokens.append(oauth.json()["token"])
            custom = create_custom(
                api, f"{ledger.url}/{PATH_TOKEN}?token={QUERY_TOKEN}", store_id=2000,
                **{"ecwid.order.key": LEGACY_ORDER_KEY, "ecwid.product.key": LEGACY_PRODUCT_KEY,
                   "event.notification.signature.key": SIGNING_KEY,
                   "event.notification.signature.scheme": "both",
                   "event.notification.standardwebhooks.secret": f"whsec_{STANDARD_KEY}",
                   "ecwid.ion.enabled": True, "ecwid.ion.secret": ION_SECRET, "ecwid.api.token": API_TOKEN},
            )  # fmt: skip
            tokens.append(custom["token"])
            assert post_webhook(api, webhook("secret-1"), secret=APP_SECRET).status_code == 200
            assert post_webhook(api, webhook("secret-2", store_id=2000)).status_code == 200
            ion = api.post(f"/events/ecwid?secret={ION_SECRET}",
                           data={"owner_id": "2000", "event_type": "new_order", "order_id": "77"})  # fmt: skip
            assert ion.status_code == 200, ion.text
            results = api.post(f"/events/ecwid/{custom['id']}?objectType=orders", json={"items": []},
                               headers={"Authorization": f"Element {custom['token']}"})  # fmt: skip
            assert results.status_code == 202, results.text
            # Refusals log too: wrong credentials of every kind, a wrong signature, a wrong ION secret.
            api.get("/instances", headers={"Authorization": f"User {USER}, Organization wrong-{ORG}"})
            api.get("/instances", headers={"Authorization": f"User {USER}-nope, Organization {ORG}"})
            api.get(f"/instances/{custom['id']}", headers={"Authorization": OTHER_AUTH})
            api.post(f"/events/ecwid/{custom['id']}?objectType=orders", json={"items": []},
                     headers={"Authorization": f"Element {tokens[0]}"})  # fmt: skip
            post_webhook(api, webhook("secret-forged", store_id=2000), secret=APP_SECRET + "x")
            api.post(f"/events/ecwid?secret={ION_SECRET}x", data={"owner_id": "2000", "event_type": "new_order"})
            api.get("/elements/ecwid/oauth/url", params={"apiKey": "k", "apiSecret": APP_SECRET, "callbackUrl": "https://a/"},
                    headers={"Authorization": AUTH})  # fmt: skip
            ledger.wait_delivered(["secret-1", "secret-2"], timeout=60)
            listing = api.get(f"/instances/{custom['id']}/events", headers={"Authorization": AUTH})
            assert listing.status_code == 200
            replayed = api.post(
                f"/instances/{custom['id']}/events/replay?status=NOTIFIED", headers={"Authorization": AUTH}
            )
            assert replayed.status_code == 202
            time.sleep(1.0)
    finally:
        worker.terminate()
        receiver.terminate()
        ledger.close()

    logs = receiver.logs() + worker.logs()
    secrets = {
        "client secret": CLIENT_SECRET, "OAuth app secret": APP_SECRET, "access token": FakeEcwidOAuth.TOKEN,
        "signature key": SIGNING_KEY, "Standard Webhooks key": STANDARD_KEY, "legacy order key": LEGACY_ORDER_KEY,
        "legacy product key": LEGACY_PRODUCT_KEY, "ION secret": ION_SECRET, "Ecwid API token": API_TOKEN,
        "user secret": USER, "organization secret": ORG, "Authorization": AUTH, "other Authorization": OTHER_AUTH,
        "callback path token": PATH_TOKEN, "callback query token": QUERY_TOKEN,
        **{f"instance token {n}": token for n, token in enumerate(tokens)},
        "an Ecwid signature": ecwid_signature(CLIENT_SECRET, "1700000000", "secret-2"),
    }  # fmt: skip
    lines = logs.count("\n")
    print(f"\n[faults] secrets in logs: lines={lines} secrets_checked={len(secrets)} found=0")
    assert lines > 100  # debug logging of a whole run, not an empty file
    for name, secret in secrets.items():
        assert secret not in logs, f"{name} appears in the logs: " + next(
            line for line in logs.splitlines() if secret in line
        )
