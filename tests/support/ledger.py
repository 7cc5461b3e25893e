"""A callback endpoint that can misbehave on purpose, and the books the fault suite keeps.

`LedgerServer` is a real HTTP server on 127.0.0.1. A `policy(event_id, attempt)` decides,
per request, whether it answers (status, headers, after a delay) or drops the connection.
Every request is recorded, so a test can count what arrived, what was answered 2xx and
what arrived twice, and print the figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.servers import free_port


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False  # close the connection without answering


@dataclass(frozen=True)
class Arrival:
    webhook_id: str
    event_id: str
    at: float  # when the request arrived
    status: int | None  # what we answered; None when we dropped it


Policy = Callable[[str, int], Answer]


def always_ok(event_id: str, attempt: int) -> Answer:
    return Answer()


class LedgerServer:
    def __init__(self, policy: Policy = always_ok, host: str = "127.0.0.1") -> None:
        self.policy = policy
        self.arrivals: list[Arrival] = []
        self.in_flight: Counter[str] = Counter()  # webhook ids whose request is being answered
        self.cond = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                started = time.monotonic()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                webhook_id = self.headers.get("Elements-Webhook-Id", "")
                event_id = str(json.loads(body)["message"]["raw"].get("eventId", ""))
                with owner.cond:
                    attempt = sum(1 for a in owner.arrivals if a.webhook_id == webhook_id) + 1
                    owner.in_flight[webhook_id] += 1
                answer = owner.policy(event_id, attempt)
                try:
                    if answer.delay:
                        time.sleep(answer.delay)
                    if answer.drop:
                        self.close_connection = True
                    else:
                        self.send_response(answer.status)
                        for name, value in answer.headers.items():
                            self.send_header(name, value)
                        self.send_header("Content-Length", "2")
                        self.end_headers()
                        self.wfile.write(b"{}")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the sender died or gave up meanwhile
                finally:
                    with owner.cond:
                        owner.in_flight[webhook_id] -= 1
                        status = None if answer.drop else answer.status
                        owner.arrivals.append(Arrival(webhook_id, event_id, started, status))
                        owner.cond.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, free_port()), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def delivered_ids(self) -> set[str]:
        """Event ids answered 2xx at least once."""
        with self.cond:
            return {a.event_id for a in self.arrivals if a.status is not None and 200 <= a.status < 300}

    def wait_delivered(self, event_ids: Iterable[str], timeout: float) -> float:
        """Wait until every one of `event_ids` was answered 2xx; returns the seconds waited.
        Fails the test, naming what is missing, after `timeout`."""
        wanted = set(event_ids)
        started = time.monotonic()
        end = started + timeout
        with self.cond:
            while True:
                missing = wanted - {a.event_id for a in self.arrivals if a.status is not None and a.status < 300}
                if not missing:
                    return time.monotonic() - started
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(missing)} events not delivered in {timeout:.0f}s: {sorted(missing)[:10]}"
                    )
                self.cond.wait(min(remaining, 1.0))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Figures:
    """What a scenario accepted and what reached the callback, per event."""

    scenario: str
    accepted: set[str]
    arrivals: list[Arrival]
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def delivered(self) -> set[str]:
        return {a.event_id for a in self.arrivals if a.status is not None and 200 <= a.status < 300}

    @property
    def lost(self) -> set[str]:
        return self.accepted - self.delivered

    @property
    def duplicated(self) -> int:
        """Notifications answered 2xx more than once: the callback saw them twice."""
        counts = Counter(a.webhook_id for a in self.arrivals if a.status is not None and 200 <= a.status < 300)
        return sum(n - 1 for n in counts.values())

    def ids_per_event(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for arrival in self.arrivals:
            seen.setdefault(arrival.event_id, set()).add(arrival.webhook_id)
        return seen

    def report(self) -> str:
        parts = [
            f"accepted={len(self.accepted)}",
            f"delivered={len(self.delivered & self.accepted)}",
            f"lost={len(self.lost)}",
            f"duplicated={self.duplicated}",
            f"requests={len(self.arrivals)}",
            *(f"{key}={value}" for key, value in self.extra.items()),
        ]
        line = f"\n[faults] {self.scenario}: " + " ".join(parts)
        print(line)
        return line

    def assert_sound(self) -> None:
        """Nothing lost, nothing invented, and every event kept one Elements-Webhook-Id."""
        assert not self.lost, f"lost: {sorted(self.lost)[:20]}"
        assert self.delivered <= self.accepted, (
            f"delivered but never accepted: {sorted(self.delivered - self.accepted)}"
        )
        several = {event: ids for event, ids in self.ids_per_event().items() if len(ids) != 1}
        assert not several, f"events sent under more than one Elements-Webhook-Id: {several}"
