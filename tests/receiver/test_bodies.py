"""Reading bodies: the per-loop deadline (receiver/deadlines.py) and the limits, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from receiver import bodies
from receiver.deadlines import Deadlines
from tests.conftest import running_receiver
from tests.receiver.test_instances_api import assert_error
from workers.settings import Settings


def test_deadlines_cancel_only_the_late_tasks_with_one_timer_per_loop() -> None:
    async def scenario() -> None:
        deadlines = Deadlines(0.2)
        gate = asyncio.Event()
        outcomes: dict[str, str] = {}

        async def wait(name: str, until: asyncio.Event | float) -> None:
            task = asyncio.current_task()
            assert task is not None
            deadlines.start(task)
            try:
                if isinstance(until, float):
                    await asyncio.sleep(until)
                else:
                    await until.wait()
                outcomes[name] = "done"
            except asyncio.CancelledError:
                if deadlines.stop(task):
                    outcomes[name] = "late"
                    return
                outcomes[name] = "cancelled"
                raise
            finally:
                deadlines.stop(task)
            await asyncio.sleep(0)  # a withdrawn cancellation does not strike at the next await
            outcomes[name] += ", went on"

        started = time.monotonic()
        quick = [asyncio.create_task(wait(f"quick-{n}", 0.01)) for n in range(50)]
        late = [asyncio.create_task(wait(f"late-{n}", gate)) for n in range(3)]
        other = asyncio.create_task(wait("other", gate))
        await asyncio.sleep(0.05)
        other.cancel()
        await asyncio.gather(*quick, *late, return_exceptions=True)
        assert 0.15 < time.monotonic() - started < 1.0
        with pytest.raises(asyncio.CancelledError):
            await other
        assert outcomes == {
            **{f"quick-{n}": "done, went on" for n in range(50)},
            **{f"late-{n}": "late" for n in range(3)},
            "other": "cancelled",
        }
        loop_deadlines = deadlines._of(asyncio.get_running_loop())
        assert loop_deadlines._waiting == {} and loop_deadlines._expired == set()

    asyncio.run(scenario())


@pytest.fixture
def quick_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "DEADLINES", Deadlines(0.5))


@pytest.fixture
def url(settings: Settings, quick_deadline: None, redis_client: redis.Redis) -> Iterator[str]:
    with running_receiver(settings) as receiver:
        yield receiver.url


def test_a_slow_body_is_408_in_json_and_others_are_served_meanwhile(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    answers: list[tuple[bytes, float]] = []

    def trickle() -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /events/ecwid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 5000\r\n\r\n{")  # fmt: skip
            answer = b""
            while b"\r\n\r\n{" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        answers.append((answer, time.monotonic() - started))

    slow = [threading.Thread(target=trickle) for _ in range(3)]
    for thread in slow:
        thread.start()
    with httpx.Client(base_url=url, timeout=10) as api:
        assert_error(api.post("/events/ecwid", content=b"[]", headers={"Content-Type": "application/json"}),
                     400, "webhook body must be a JSON object")  # fmt: skip
    for thread in slow:
        thread.join(10)
    assert len(answers) == 3
    for answer, took in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower(), answer
        assert set(json.loads(body)) == {"requestId", "message"}
        assert json.loads(body)["message"] == f"the body did not arrive within {bodies.BODY_SECONDS:.0f} seconds"
        assert 0.4 < took < 3.0


def test_bodies_over_the_limit_are_413_declared_or_not(url: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 65536

    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=10) as api:
        assert_error(api.post("/events/ecwid", content=chunks(), headers=headers), 413,
                     "body is larger than 1048576 bytes")  # fmt: skip
        assert_error(api.post("/events/ecwid", content=b"x" * (bodies.MAX_BODY + 1), headers=headers), 413,
                     "body is larger than 1048576 bytes")  # fmt: skip
        exactly = api.post("/events/ecwid", content=b" " * bodies.MAX_BODY, headers=headers)
        assert exactly.status_code == 400 and exactly.json()["message"].startswith("body is not valid JSON")
