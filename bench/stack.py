"""The processes a benchmark run starts: Redis, the callback sink, receivers, workers.

Redis is the project's own (workers/redis_server.py): AOF with `appendfsync always`,
on a unix socket, exactly as `ecwid-relay dev` runs it. The receiver and the workers
are the real `ecwid-relay serve` and `ecwid-relay worker` commands.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
import redis.asyncio as aioredis

from receiver.instance_store import InstanceStore
from workers import keys
from workers.instances import Instance, user_id
from workers.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
# Throwaway credentials of a throwaway Redis.
USER_SECRET = "bench-user-secret-0123456789"  # noqa: S105
ORGANIZATION_SECRET = "bench-organization-secret-0123"  # noqa: S105
CLIENT_SECRET = "bench-client-secret-0123456789"  # noqa: S105


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Process:
    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


class Stack:
    """Redis and the sink for the whole run; receivers and workers started per phase."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.redis_server = RedisServer(directory / "redis")
        self.processes: list[Process] = []
        self.sink_port = free_port()

    def __enter__(self) -> Stack:
        self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        try:
            self.sink = self.spawn([sys.executable, "-m", "bench.sink", str(self.sink_port)], "sink")
            wait_http(f"{self.sink_url}/_count", self.sink)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.redis.close()
        self.redis_server.stop()

    @property
    def redis_pid(self) -> int:
        assert self.redis_server.process is not None
        return self.redis_server.process.pid

    @property
    def sink_url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env.update(
            RELAY_REDIS_URL=self.redis_server.url,
            RELAY_ORGANIZATION_SECRET=ORGANIZATION_SECRET,
            RELAY_USER_SECRETS=USER_SECRET,
            RELAY_ECWID_CLIENT_SECRETS=CLIENT_SECRET,
            RELAY_CALLBACK_ALLOW_NETS="127.0.0.0/8",
            RELAY_LOG_LEVEL="info",
            PYTHONPATH=str(ROOT),
        )
        return env

    def spawn(self, command: list[str], name: str) -> Process:
        process = Process(command, self.directory / f"{name}-{len(self.processes)}.log", self.env())
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        self.processes.remove(process)

    # -- the relay --------------------------------------------------------------------

    def receiver(self) -> tuple[Process, str]:
        port = free_port()
        command = [sys.executable, "-m", "workers.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = self.spawn(command, "receiver")
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", process)
        return process, url

    def bare(self) -> tuple[Process, str]:
        port = free_port()
        process = self.spawn([sys.executable, "-m", "bench.bare", str(port)], "bare")
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/events/ecwid", process, method="POST")
        return process, url

    def workers(self, count: int) -> list[Process]:
        started = [self.spawn([sys.executable, "-m", "workers.cli", "worker"], "worker") for _ in range(count)]
        for process in started:
            wait_log(process, "Listening on")
        return started

    def reset(self) -> None:
        self.redis.flushall()
        self.sink_reset()

    def sink_reset(self) -> None:
        httpx.post(f"{self.sink_url}/_reset")

    def sink_count(self) -> int:
        return int(httpx.get(f"{self.sink_url}/_count").json()["count"])

    def sink_dump(self) -> list[tuple[str, float]]:
        return [(str(i), float(t)) for i, t in httpx.get(f"{self.sink_url}/_dump", timeout=30).json()]

    def create_instances(self, count: int) -> dict[int, int]:
        """`count` instances, one store each, all calling the sink. Returns {store id: instance id}."""
        return asyncio.run(self._create(count))

    async def _create(self, count: int) -> dict[int, int]:
        connection = aioredis.Redis.from_url(self.redis_server.url)
        store = InstanceStore(connection)
        owner = user_id(USER_SECRET)
        made: dict[int, int] = {}
        limit = asyncio.Semaphore(64)

        async def one(n: int) -> None:
            store_id = 1_000_000 + n
            configuration = {
                "ecwid.store.id": str(store_id), "ecwid.order.key": "bench-order-key",
                "ecwid.product.key": "bench-product-key", "event.notification.enabled": "true",
                "event.notification.callback.url": f"{self.sink_url}/hook",
            }  # fmt: skip
            draft = Instance(id=0, owner=owner, name=f"bench {n}", token="", auth="custom",
                             store_id=store_id, configuration=configuration)  # fmt: skip
            async with limit:
                made[store_id] = (await store.create(draft)).id

        await asyncio.gather(*(one(n) for n in range(count)))
        await connection.aclose()
        return made

    # -- Redis figures ----------------------------------------------------------------

    def command_calls(self) -> dict[str, int]:
        stats = self.redis.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def inbox_length(self) -> int:
        return int(self.redis.llen(keys.INBOX))

    def forks(self) -> int:
        """Forks so far: each an AOF rewrite here (Redis rewrites once the file doubles past 64 MB)."""
        return int(self.redis.info("stats")["total_forks"])

    def compact_aof(self, timeout: float = 60.0) -> int:
        """Rewrite the AOF now and wait for it: each measured run then starts from a compact file,
        and meets the rewrites its own writes cause, not those its predecessors left due. Returns
        the fork count after it, to count the run's own rewrites from (`forks`)."""
        while self.redis.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
        self.redis.bgrewriteaof()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            info = self.redis.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                return self.forks()
            time.sleep(0.05)
        raise RuntimeError(f"the AOF rewrite took longer than {timeout} s")


def wait_http(url: str, process: Process | None = None, method: str = "GET", timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.log.name} exited:\n{process.log.read_text()[-2000:]}")
        try:
            httpx.request(method, url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def wait_log(process: Process, text: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while text not in process.log.read_text(errors="replace"):
        if not process.alive():
            raise RuntimeError(f"{process.log.name} exited:\n{process.log.read_text()[-2000:]}")
        if time.monotonic() > end:
            raise RuntimeError(f"{text!r} not in {process.log.name} after {timeout:.0f}s")
        time.sleep(0.05)
