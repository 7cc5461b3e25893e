"""The receiver's access line: one JSON line per request with the outcome, never a secret."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path
from typing import Any

from receiver.access_log import TickWriter
from receiver.errors import new_request_id
from tests.conftest import AUTH, CLIENT_SECRET
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.processes import Receiver
from workers.settings import Settings
from workers.signatures import ecwid_signature


def access_lines(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    end = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in receiver.logs().splitlines() if line.startswith("{")]
        found = [line for line in lines if line.get("event") == "request" and line["path"] != "/health"]
        if len(found) >= count or time.monotonic() > end:
            return found
        time.sleep(0.05)


def test_one_access_line_per_request_with_its_outcome_and_no_secret(settings: Settings, tmp_path: Path) -> None:
    receiver = Receiver(settings, tmp_path / "receiver.log")
    try:
        with receiver.client() as api:
            instance = create_custom(api, "http://127.0.0.1:9/hook")
            accepted = post_webhook(api, webhook("evt-log"))
            assert accepted.status_code == 200, accepted.text
            refused = post_webhook(api, webhook("evt-log-2"), secret="guessed-secret")
            assert refused.status_code == 401
            json_type = {"Content-Type": "application/json"}
            bad = api.post("/events/ecwid?secret=in-the-query", content=b"{", headers=json_type)
            assert bad.status_code == 400
    finally:
        receiver.terminate()
    lines = access_lines(receiver, 4)
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("POST", "/instances", 200),
        ("POST", "/events/ecwid", 200),
        ("POST", "/events/ecwid", 401),
        ("POST", "/events/ecwid", 400),
    ]
    ok = lines[1]
    assert ok["request_id"] == accepted.json()["requestId"] == accepted.headers["x-request-id"]
    assert {key: ok[key] for key in ("level", "logger", "role", "event_id", "store_id", "outcome", "event_type")} == {
        "level": "info",
        "logger": "receiver.access",
        "role": "receiver",
        "event_id": "evt-log",
        "store_id": 1003,
        "outcome": "accepted",
        "event_type": "order.created",
    }
    assert ok["targets"] == 1 and isinstance(ok["ms"], float) and ok["timestamp"].endswith("Z")
    assert lines[2]["event_id"] == "evt-log-2" and "outcome" not in lines[2]
    # Context never leaks from one request into the next.
    assert "event_id" not in lines[3] and lines[3]["request_id"] == bad.json()["requestId"]
    text = receiver.logs()
    signature = ecwid_signature(CLIENT_SECRET, "1700000000", "evt-log")
    for secret in (CLIENT_SECRET, signature, "in-the-query", AUTH, instance["token"]):
        assert secret not in text


def test_request_ids_are_24_hex_digits_and_distinct() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{24}", found) for found in ids)


def test_lines_of_one_loop_turn_are_written_together_in_order() -> None:
    stream = io.BytesIO()
    writer = TickWriter(stream)
    writer.msg(b"outside a loop\n")
    assert stream.getvalue() == b"outside a loop\n"

    async def scenario() -> None:
        for n in range(3):
            writer.msg(f"line {n}\n".encode())
        assert stream.getvalue() == b"outside a loop\n"  # not yet: at the end of this turn
        await asyncio.sleep(0)
        assert stream.getvalue() == b"outside a loop\nline 0\nline 1\nline 2\n"

    asyncio.run(scenario())
