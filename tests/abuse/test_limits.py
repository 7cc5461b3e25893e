"""Scenario 10: oversized, lying, slow and pathological bodies are refused early and cheaply,
while the receiver keeps answering everyone else."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import redis

from receiver.bodies import BODY_SECONDS, MAX_BODY
from tests.conftest import AUTH, CLIENT_SECRET
from tests.support.processes import Receiver
from workers.signatures import ecwid_signature

SIGNED = {"Content-Type": "application/json", "X-Ecwid-Webhook-Signature": ecwid_signature(CLIENT_SECRET, "1", "x")}


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 30) -> tuple[bytes, float]:
    """Send `head` and `body` on a fresh connection; returns the first bytes answered and when."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        answer = sock.recv(4096)
    return answer, time.monotonic() - started


def health_latencies(url: str, stop: threading.Event, out: list[float]) -> None:
    """Another client, asking /health all along: the receiver must keep answering it."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            started = time.monotonic()
            assert client.get("/health").status_code == 200
            out.append(time.monotonic() - started)
            time.sleep(0.05)


def test_bodies_beyond_the_limits_are_refused_early(receiver_process: Receiver, redis_client: redis.Redis) -> None:
    port = receiver_process.port
    stop = threading.Event()
    latencies: list[float] = []
    watcher = threading.Thread(target=health_latencies, args=(receiver_process.url, stop, latencies))
    watcher.start()
    figures: dict[str, str] = {}
    try:
        # A 50 MiB Content-Length: refused from the headers, before a byte of body is sent.
        head = (f"POST /events/ecwid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {50 * MAX_BODY}\r\n\r\n").encode()  # fmt: skip
        answer, took = raw_request(port, head)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        figures["declared_50MiB"] = f"413 in {took * 1000:.0f}ms"

        with receiver_process.client() as api:
            # Chunked, no Content-Length, 2 MiB: refused once the first MiB is passed.
            sent = 0

            def chunks() -> Iterator[bytes]:
                nonlocal sent
                for _ in range(32):
                    sent += 65536
                    yield b" " * 65536

            response = api.post("/events/ecwid", content=chunks(), headers=SIGNED)
            assert response.status_code == 413 and set(response.json()) == {"requestId", "message"}
            figures["chunked_2MiB"] = "413"
            # The instances API has the same limit.
            big = api.post("/instances", content=b"{" + b" " * (MAX_BODY + 10) + b"}",
                           headers={"Authorization": AUTH, "Content-Type": "application/json"})  # fmt: skip
            assert big.status_code == 413

            # Deeply nested JSON and a huge flat object within the size limit: 400, quickly.
            deep = (
                b'{"eventId":"d","eventCreated":1,"storeId":1003,"eventType":"order.created","data":' + b"[" * 100_000
            )
            nested = api.post("/events/ecwid", content=deep + b"]" * 100_000 + b"}", headers=SIGNED)
            assert nested.status_code in (400, 413), nested.text
            figures["nested_100k"] = f"{nested.status_code} in {nested.elapsed.total_seconds() * 1000:.0f}ms"
            wide = {f"k{n}": n for n in range(55_000)}  # about 1 MiB of keys
            body = json.dumps({"eventId": "w", "eventCreated": 1, "storeId": 1003, "eventType": "order.created",
                               "data": wide}).encode()  # fmt: skip
            assert len(body) <= MAX_BODY
            flat = api.post("/events/ecwid", content=body, headers=SIGNED)
            assert flat.status_code == 401, flat.text  # parsed, checked, refused: the signature is for "x"
            figures["keys_55k"] = f"{flat.status_code} in {flat.elapsed.total_seconds() * 1000:.0f}ms"
            million = b"{" + b",".join(b'"%d":0' % n for n in range(1_000_000)) + b"}"
            huge = api.post("/events/ecwid", content=million, headers=SIGNED)
            assert huge.status_code == 413
            figures["keys_1M"] = "413"

        # A lying Content-Length, shorter than the body: the rest is a malformed second request.
        body = json.dumps({"eventId": "lie", "eventCreated": 1, "storeId": 1003, "eventType": "x"}).encode()
        head = (b"POST /events/ecwid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10\r\n\r\n")  # fmt: skip
        answer, _ = raw_request(port, head, body)
        assert answer.startswith(b"HTTP/1.1 400"), answer

        # Slow-loris bodies: 20 clients that declare 5000 bytes and trickle one a second.
        def trickle(results: list[tuple[bytes, float]]) -> None:
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(
                    b"POST /events/ecwid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 5000\r\n\r\n{"
                )
                sock.settimeout(1.0)
                while True:
                    try:
                        answer = sock.recv(4096)
                        sock.settimeout(5.0)
                        try:
                            while chunk := sock.recv(4096):  # to the end: the server closes the connection
                                answer += chunk
                        except OSError:
                            pass  # closed with our trickled bytes unread: the kernel resets after the answer
                        break
                    except TimeoutError:
                        try:
                            sock.sendall(b" ")
                        except OSError:
                            answer = b""
                            break
            results.append((answer, time.monotonic() - started))

        trickled: list[tuple[bytes, float]] = []
        slow = [threading.Thread(target=trickle, args=(trickled,)) for _ in range(20)]
        for thread in slow:
            thread.start()
        for thread in slow:
            thread.join(BODY_SECONDS * 4)
        assert len(trickled) == 20
        assert all(answer.startswith(b"HTTP/1.1 408") for answer, _ in trickled), trickled[:2]
        assert all(b'"requestId"' in answer for answer, _ in trickled if b"\r\n\r\n{" in answer)
        longest = max(took for _, took in trickled)
        assert longest < BODY_SECONDS * 3, longest
        figures["slow_loris_x20"] = f"408 after <= {longest:.1f}s"
    finally:
        stop.set()
        watcher.join(30)
    assert latencies, "the watcher got no answer"
    assert max(latencies) < 2.0, max(latencies)  # generous: other clients are served throughout
    assert redis_client.keys("relay:*") == []  # nothing of it was stored
    figures["health_p_max_ms"] = f"{max(latencies) * 1000:.0f}"
    figures["health_answers"] = str(len(latencies))
    print("\n[faults] limits: " + " ".join(f"{k}={v}" for k, v in figures.items()))
