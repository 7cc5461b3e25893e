"""Real local HTTP servers for tests: a callback sink and a fake Ecwid OAuth endpoint.

Both are plain `http.server` servers on 127.0.0.1, in a thread: real sockets,
real HTTP, nothing mocked.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class _Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.lock = threading.Condition()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm on, the body waited for
            # the client's delayed ACK, 40 ms per answer, which hid how fast the relay answers.
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                record = Received(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
                )
                reply = owner.reply_for(record)
                if reply.delay:
                    time.sleep(reply.delay)
                with owner.lock:
                    owner.received.append(record)
                    owner.lock.notify_all()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply_for(self, record: Received) -> Reply:
        return Reply()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until `count` requests arrived; returns them (fails the test on timeout)."""
        end = time.monotonic() + timeout
        with self.lock:
            while len(self.received) < count:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} requests, got {len(self.received)} in {timeout}s")
                self.lock.wait(remaining)
            return list(self.received)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class CallbackServer(_Server):
    """Records every notification; answers with the scripted replies, then 200."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        super().__init__()

    def reply_for(self, record: Received) -> Reply:
        with self.lock:
            return self.script.pop(0) if self.script else Reply()


class FakeEcwidOAuth(_Server):
    """Ecwid's /api/oauth/token: `good-code` succeeds once, `bad-code` is refused,
    `broken` fails with 500. Any other code is refused like an expired one."""

    STORE_ID = 1003
    TOKEN = "secret_fake_access_token_123456"

    def reply_for(self, record: Received) -> Reply:
        form = dict(parse_qsl(record.body.decode()))
        code = form.get("code")
        if record.path != "/api/oauth/token" or record.method != "POST":
            return Reply(404, b'{"error":"not found"}')
        if code == "broken":
            return Reply(500, b"upstream trouble")
        if code == "good-code" and form.get("grant_type") == "authorization_code":
            body = {
                "access_token": self.TOKEN,
                "token_type": "bearer",
                "scope": "read_orders",
                "store_id": self.STORE_ID,
            }
            return Reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        error = {"error": "invalid_grant", "error_description": "authorization code expired or already used"}
        return Reply(400, json.dumps(error).encode(), {"Content-Type": "application/json"})

    @property
    def oauth_url(self) -> str:
        return f"{self.url}/api/oauth"
