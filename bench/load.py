"""Load: signed Ecwid webhooks, and two ways to send them.

* `wrk` (Debian's) replays a file of pre-signed requests through bench/wrk.lua:
  the throughput runs, where the generator must out-run a 30k req/s endpoint; and, through
  bench/wrk_paced.lua, at a fixed rate: ingest latency at a given load rather than at
  saturation (where a closed loop's latency is its connection count over the rate).
* `python -m bench.load`, our own asyncio generator: a fixed number of requests
  as fast as it can (filling queues), or an open-loop fixed rate (the end-to-end
  latency run), recording when each event's 200 arrived. It is also the fallback
  for throughput when wrk is missing, and then says so (it is slower than wrk).

Every request has a unique eventId, signed with the global client secret the way
Ecwid signs: base64(HMAC-SHA256(secret, "{eventCreated}.{eventId}")).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from workers.signatures import ecwid_signature

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
WRK_PACED_SCRIPT = Path(__file__).with_name("wrk_paced.lua")


@dataclass(frozen=True)
class Webhook:
    path: str
    signature: str
    body: bytes
    event_id: str
    store_id: int


REPEATS = 4  # changes per order, as an order is created, paid, shipped and delivered


def webhooks(
    run: str, count: int, stores: list[int], secret: str, payload: int = 0, repeats: int = REPEATS
) -> list[Webhook]:
    """`count` order.updated webhooks with distinct eventIds, spread round-robin over `stores`.

    Every store has the same number of orders, ceil(ceil(`count` / stores) / `repeats`), and its
    k-th event is about its order k mod that number: each order changes `repeats` times where a store
    gets that many events per order (a store with fewer events changes fewer orders, or one order
    fewer times), and the changes of one order lie apart, as in real traffic. An order changed before
    costs the relay other Redis work than a new one (its change marker is replaced, not created), and
    the figures must include that. Raises ValueError unless `repeats` >= 1.
    `payload` > 0 pads `data` so that the whole body is about that many bytes.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    created = int(time.time())
    per_store = -(-count // len(stores))  # (ceiling division)
    orders = -(-per_store // repeats)
    found = []
    for n in range(count):
        event_id = f"{run}-{n}"
        store = stores[n % len(stores)]
        order = (n // len(stores)) % orders
        data = {"orderId": f"B{order}", "newPaymentStatus": "PAID", "oldPaymentStatus": "AWAITING_PAYMENT"}
        document = {"eventId": event_id, "eventCreated": created, "storeId": store, "entityId": order,
                    "eventType": "order.updated", "data": data}  # fmt: skip
        body = orjson.dumps(document)
        if payload > len(body):
            # Text that compresses about as badly as real order data, so RQ's zlib cannot flatter the figures.
            data["note"] = _filler(n, payload - len(body) - len(',"note":""'))
            body = orjson.dumps(document)
        found.append(Webhook("/events/ecwid", ecwid_signature(secret, str(created), event_id), body, event_id, store))
    return found


def _filler(seed: int, size: int) -> str:
    text = b""
    block = str(seed).encode()
    while len(text) < size:
        block = hashlib.sha256(block).digest()
        text += base64.b64encode(block)
    return text[:size].decode()


def write_requests(path: Path, hooks: list[Webhook]) -> None:
    with path.open("wb") as out:
        for hook in hooks:
            out.write(f"{hook.path}\t{hook.signature}\t".encode() + hook.body + b"\n")


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


@dataclass(frozen=True)
class Throughput:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    generator: str


def throughput(url: str, requests: Path, *, connections: int, seconds: float) -> Throughput:
    """Closed-loop load for `seconds`: wrk when installed, else our generator."""
    if have_wrk():
        command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
                   "-s", str(WRK_SCRIPT), url, "--", str(requests)]  # fmt: skip
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        line = next(text for text in output.splitlines() if text.startswith("{"))
        result = json.loads(line)
        duration = result["duration_us"] / 1e6
        return Throughput(
            requests=result["requests"], seconds=duration, rps=result["requests"] / duration,
            p50_ms=result["p50_us"] / 1000, p99_ms=result["p99_us"] / 1000, max_ms=result["max_us"] / 1000,
            errors=result["status_errors"] + result["socket_errors"] + result["timeouts"], generator="wrk",
        )  # fmt: skip
    command = [sys.executable, "-m", "bench.load", url, str(requests), "--connections", str(connections),
               "--seconds", str(seconds)]  # fmt: skip
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    return Throughput(**result, generator="bench.load (python)")


@dataclass(frozen=True)
class Paced:
    rate: float  # asked for
    requests: int  # answered
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sent: int
    late: int  # sent more than 2 ms behind their time: the run fell behind its rate
    errors: int

    @property
    def held(self) -> bool:
        """The rate was kept: answered at 95% of it or more, at most 1% of sends late, no errors."""
        return self.rps >= 0.95 * self.rate and self.late <= 0.01 * self.sent and not self.errors


def paced(url: str, requests: Path, *, rate: float, connections: int, seconds: float) -> Paced | None:
    """`rate` requests per second for `seconds` over up to `connections` connections (wrk only:
    our own generator cannot hold thousands a second beside the server; None without wrk)."""
    if not have_wrk():
        return None
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
               "-s", str(WRK_PACED_SCRIPT), url, "--", str(requests), str(rate)]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, int] = {}
    for line in output.splitlines():
        if line.startswith("{"):
            result.update(json.loads(line))
    seconds_run = result["duration_us"] / 1e6
    return Paced(
        rate=rate, requests=result["requests"], rps=result["requests"] / seconds_run,
        p50_ms=result["p50_us"] / 1000, p99_ms=result["p99_us"] / 1000, max_ms=result["max_us"] / 1000,
        sent=result["paced_sent"], late=result["paced_late"],
        errors=result["status_errors"] + result["socket_errors"] + result["timeouts"],
    )  # fmt: skip


# -- our own generator ------------------------------------------------------------------


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _request(host: str, line: bytes) -> bytes:
    path, signature, body = line.rstrip(b"\n").split(b"\t", 2)
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\nContent-Type: application/json\r\n"
        b"X-Ecwid-Webhook-Signature: " + signature + b"\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\n\r\n" + body
    )  # fmt: skip


async def generate(
    url: str, lines: list[bytes], *, connections: int, seconds: float | None, rate: float | None
) -> dict[str, object]:
    """Send `lines` (wrk's file format) over `connections` keep-alive connections.

    Closed loop (no `rate`): as fast as answers come, until `seconds` pass or the lines run
    out. Open loop: line n is due at n/`rate` seconds; its latency counts from when it was
    due, so a stall shows up in the figures instead of slowing the sender down.
    """
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    requests = [_request(host_port, line) for line in lines]
    latencies: list[float] = []
    accepted: dict[int, float] = {}  # request index -> monotonic time of its 200
    errors = 0
    started = time.monotonic()
    deadline = started + seconds if seconds else float("inf")
    due: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    cursor = 0

    def take() -> tuple[int, float] | None:
        nonlocal cursor
        if cursor >= len(requests) or time.monotonic() > deadline:
            return None
        cursor += 1
        return cursor - 1, time.monotonic()

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                job = take() if rate is None else await due.get()
                if job is None or job[0] < 0:
                    return
                index, scheduled = job
                status = await _exchange(reader, writer, requests[index])
                now = time.monotonic()
                latencies.append(now - scheduled)
                if status == 200:
                    accepted[index] = now
                else:
                    errors += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    if rate is not None:
        for index in range(len(requests)):
            at = started + index / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            due.put_nowait((index, at))
        for _ in tasks:
            due.put_nowait((-1, 0.0))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]
    return {
        "requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
        "p50_ms": ordered[len(ordered) // 2] * 1000, "p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "max_ms": ordered[-1] * 1000, "errors": errors, "accepted": accepted,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description="send pre-signed webhooks (bench/wrk.lua's file format)")
    parser.add_argument("url")
    parser.add_argument("requests", type=Path)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rate", type=float, help="open loop: requests per second, all of the file")
    parser.add_argument("--accepted", type=Path, help="write {request index: time of 200} here")
    args = parser.parse_args()
    lines = args.requests.read_bytes().splitlines(keepends=True)
    import uvloop

    result = uvloop.run(generate(args.url, lines, connections=args.connections, seconds=args.seconds, rate=args.rate))
    accepted = result.pop("accepted")
    if args.accepted:
        args.accepted.write_bytes(orjson.dumps({str(k): v for k, v in accepted.items()}))  # type: ignore[attr-defined]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
