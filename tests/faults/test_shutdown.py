"""Scenario 5: SIGTERM to the receiver and to the workers under load loses nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import redis

from tests.conftest import CLIENT_SECRET
from tests.faults.conftest import send, subscribe
from tests.support.ecwid import webhook
from tests.support.ledger import Answer, Figures, LedgerServer
from tests.support.processes import Receiver, Worker
from workers.settings import Settings
from workers.signatures import ecwid_signature


def start_slow_post(port: int, event_id: str) -> tuple[socket.socket, bytes]:
    """Send a signed webhook's headers and half its body; returns the socket and the rest."""
    body = json.dumps(webhook(event_id)).encode()
    signature = ecwid_signature(CLIENT_SECRET, "1700000000", event_id)
    head = (
        f"POST /events/ecwid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Ecwid-Webhook-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    half = len(body) // 2
    sock.sendall(head + body[:half])
    return sock, body[half:]


def read_response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_receiver_sigterm_answers_in_flight_requests(fault_settings: Settings, tmp_path: Path) -> None:
    ledger = LedgerServer()
    first = Receiver(fault_settings, tmp_path / "receiver-1.log")
    worker = Worker(fault_settings, tmp_path / "worker.log", "term-r-w")
    second = None
    try:
        with first.client() as api:
            subscribe(api, ledger.url)
        answers: dict[str, int | str] = {}
        events = [f"term-r-{t}-{n}" for t in range(3) for n in range(150)]

        def load(part: list[str]) -> None:
            with first.client() as api:
                send(api, part, into=answers)

        senders = [threading.Thread(target=load, args=(events[t * 150 : (t + 1) * 150],)) for t in range(3)]
        for sender in senders:
            sender.start()
        while len(answers) < 60:
            time.sleep(0.01)
        in_flight, rest = start_slow_post(first.port, "term-r-slow")
        time.sleep(0.3)  # the request is being read when the signal comes
        first.process.send_signal(15)
        time.sleep(0.5)
        in_flight.sendall(rest)
        status, body = read_response(in_flight)
        in_flight.close()
        assert (status, body["message"]) == (200, "accepted"), body
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught: exit by SIGTERM.
        assert first.process.wait(30) in (0, -15)
        assert "Application shutdown complete" in first.logs() and "Finished server process" in first.logs()
        for sender in senders:
            sender.join(60)

        answered = {event for event, status in answers.items() if status == 200} | {"term-r-slow"}
        unanswered = [event for event, status in answers.items() if status != 200]
        assert all(isinstance(status, str) or status == 200 for status in answers.values()), set(answers.values())
        second = Receiver(fault_settings, tmp_path / "receiver-2.log")
        with second.client() as api:
            retried = send(api, unanswered)  # Ecwid's retry of what got no answer
        assert set(retried.values()) <= {200}
        ledger.wait_delivered(events + ["term-r-slow"], timeout=60)
        figures = Figures(
            "receiver SIGTERM under load",
            answered | set(unanswered),
            list(ledger.arrivals),
            {"answered_before_exit": len(answered), "refused_at_connect_then_resent": len(unanswered)},
        )
        figures.report()
        figures.assert_sound()
        assert figures.duplicated == 0
    finally:
        worker.terminate()
        first.terminate()
        if second is not None:
            second.terminate()
        ledger.close()


def test_worker_sigterm_finishes_in_flight_deliveries(fault_settings: Settings, tmp_path: Path) -> None:
    ledger = LedgerServer(lambda event_id, attempt: Answer(delay=0.5))
    r = redis.Redis.from_url(fault_settings.redis_url or "")
    receiver = Receiver(fault_settings, tmp_path / "receiver.log")
    workers = [Worker(fault_settings, tmp_path / f"worker-{n}.log", f"term-w{n}") for n in range(3)]
    replacements: list[Worker] = []
    try:
        with receiver.client() as api:
            subscribe(api, ledger.url)
            events = [f"term-w-{n}" for n in range(90)]
            assert set(send(api, events).values()) == {200}
        # Wait until every worker has a delivery on the wire, then SIGTERM them all at once.
        end = time.monotonic() + 30
        while not all(r.scard(f"rq:worker:{w.name}:executions") for w in workers) or sum(
            ledger.in_flight.values()
        ) < len(workers):
            assert time.monotonic() < end, "workers never all busy"
            time.sleep(0.01)
        in_flight_at_signal = sum(ledger.in_flight.values())
        signalled = time.monotonic()
        for worker in workers:
            worker.process.send_signal(15)
        codes = [worker.process.wait(30) for worker in workers]
        stopped_in = time.monotonic() - signalled
        delivered_by_then = len(ledger.delivered_ids())
        assert codes == [0] * len(workers)
        assert r.zcard("rq:wip:relay-deliveries") == 0, "a stopped worker left a job started"
        replacements = [Worker(fault_settings, tmp_path / f"worker-new-{n}.log", f"term-new-w{n}") for n in range(3)]
        ledger.wait_delivered(events, timeout=90)
        figures = Figures(
            "worker SIGTERM under load",
            set(events),
            list(ledger.arrivals),
            {"in_flight_at_sigterm": in_flight_at_signal, "delivered_before_exit": delivered_by_then,
             "exit_s": f"{stopped_in:.1f}"},
        )  # fmt: skip
        figures.report()
        figures.assert_sound()
        assert figures.duplicated == 0  # in-flight deliveries finished; none was sent again
        assert len(ledger.arrivals) == len(events)
    finally:
        for worker in workers + replacements:
            worker.terminate()
        receiver.terminate()
        ledger.close()
        r.close()
