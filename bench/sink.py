"""The callback sink: a minimal HTTP/1.1 server that records when each notification arrived.

It must out-run the workers, so it is an asyncio protocol on uvloop with httptools
as the parser (both come with uvicorn[standard]): no framework, no body parsing.
Each POST is recorded as (Elements-Webhook-Id, time.monotonic()) and answered 200.
CLOCK_MONOTONIC is system-wide on Linux, so these times compare with the load
generator's. Control: GET /_count, GET /_dump (JSON [[id, t], ...]), POST /_reset.

Run: python -m bench.sink PORT
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import cast

import httptools
import orjson
import uvloop

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"
received: list[tuple[str, float]] = []


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.webhook_id = ""
        self.url = b""
        self.header = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"elements-webhook-id":
            self.webhook_id = value.decode()

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        if self.url == b"/_count":
            self._answer(orjson.dumps({"count": len(received)}))
        elif self.url == b"/_dump":
            self._answer(orjson.dumps(received))
        elif self.url == b"/_reset":
            received.clear()
            self._answer(b"{}")
        elif method == b"POST":
            received.append((self.webhook_id, time.monotonic()))
            self.transport.write(OK)
        else:
            self._answer(b"{}")
        self.webhook_id, self.url = "", b""

    def _answer(self, body: bytes) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n"
        self.transport.write(head.encode() + body)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
