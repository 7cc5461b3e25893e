"""Driving the stack: load files sent to the receiver, and waiting for the inbox and the sink."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.stack import CLIENT_SECRET, Stack
from workers import keys


def requests_file(directory: Path, run: str, count: int, stores: list[int]) -> Path:
    requests = directory / f"{run}.txt"
    load.write_requests(requests, load.webhooks(run, count, stores, CLIENT_SECRET))
    return requests


def arrival_rate(stack: Stack) -> float:
    """Notifications per second at the sink, from the first arrival to the last."""
    times = sorted(t for _, t in stack.sink_dump())
    return (len(times) - 1) / (times[-1] - times[0])


def send_at(url: str, requests: Path, rate: float, accepted: Path | None = None) -> dict[str, Any]:
    """Every request of the file at a steady `rate` per second (open loop); raises on a non-200."""
    command = [sys.executable, "-m", "bench.load", url, str(requests), "--connections", "8", "--rate", str(rate)]
    if accepted is not None:
        command += ["--accepted", str(accepted)]
    sent: dict[str, Any] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    if sent["errors"]:
        raise RuntimeError(f"{sent['errors']} of {sent['requests']} requests to {url} were not answered 200")
    return sent


def send_all(url: str, requests: Path, connections: int = 16) -> dict[str, Any]:
    """Every request of the file, as fast as they are answered (our generator); raises on a non-200."""
    command = [sys.executable, "-m", "bench.load", url, str(requests), "--connections", str(connections)]
    sent: dict[str, Any] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    if sent["errors"]:
        raise RuntimeError(f"{sent['errors']} of {sent['requests']} requests to {url} were not answered 200")
    return sent


def clear_inbox(stack: Stack, quiet: float = 0.3) -> None:
    """Empty the inbox once the requests still in flight when the load generator stopped have been
    accepted (its length unchanged for `quiet` seconds): else they join the next run's events."""
    length = stack.inbox_length()
    while True:
        time.sleep(quiet)
        now = stack.inbox_length()
        if now == length:
            break
        length = now
    stack.redis.delete(keys.INBOX)


def wait_for_sink(stack: Stack, count: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while stack.sink_count() < count:
        if time.monotonic() > end:
            raise RuntimeError(f"the sink got {stack.sink_count()} of {count} notifications in {timeout:.0f}s")
        time.sleep(0.05)


def delivered(stack: Stack, count: int) -> int:
    """What the sink holds once `count` events have been delivered (`wait_for_sink`): exactly `count`.
    Raises if it holds more: notifications left over from an earlier run, which would have been timed
    and costed with this one, or sent twice."""
    arrived = stack.sink_count()
    if arrived != count:
        raise RuntimeError(f"the sink holds {arrived} notifications for {count} events")
    return arrived
