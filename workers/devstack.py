"""`ecwid-relay dev`: the whole relay in one command, for a laptop.

Starts and supervises an embedded redis-server (unless RELAY_REDIS_URL is set),
one receiver, N workers and the polling scheduler as child processes. A child that dies is restarted.
Ctrl-C (or SIGTERM) stops the receiver and workers first, then Redis, so that
every acknowledged event is on disk before Redis exits.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from workers.redis_server import RedisServer
from workers.settings import Settings

STOP_GRACE_SECONDS = 30.0
DEV_ALLOW_NETS = "127.0.0.0/8,::1/128"


def say(message: str) -> None:
    print(f"[ecwid-relay dev] {message}", file=sys.stderr, flush=True)


def dev_secrets(settings: Settings, data_dir: Path) -> dict[str, str]:
    """Secrets for the child processes: the configured ones, else generated once and kept
    in `data_dir/secrets.env`. Newly generated ones are printed once."""
    path = data_dir / "secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("RELAY_"):
                stored[name.strip()] = value.strip()
    configured = {
        "RELAY_ORGANIZATION_SECRET": settings.organization_secret is not None,
        "RELAY_USER_SECRETS": bool(settings.user_secrets),
        "RELAY_ECWID_CLIENT_SECRETS": bool(settings.ecwid_client_secrets),
    }
    generated = []
    for name, is_set in configured.items():
        if not is_set and name not in stored:
            stored[name] = secrets.token_urlsafe(24)
            generated.append(name)
    if generated:
        path.write_text("".join(f"{name}={value}\n" for name, value in sorted(stored.items())))
        path.chmod(0o600)
        say(f"generated {', '.join(generated)}; kept in {path} (shown once):")
        for name in generated:
            print(f"  {name}={stored[name]}", file=sys.stderr, flush=True)
    return {name: value for name, value in stored.items() if not configured.get(name, True)}


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: Mapping[str, str]) -> None:
        # Own session: Ctrl-C reaches only the supervisor, which stops children in order.
        self.process = subprocess.Popen(self.command, env=dict(env), start_new_session=True)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)


class Supervisor:
    def __init__(self, children: list[Child], env: Mapping[str, str]) -> None:
        self.children = children
        self.env = env
        self.stopping = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # second Ctrl-C: stop waiting
            for child in self.children:
                if child.alive():
                    assert child.process is not None
                    child.process.kill()
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        for child in self.children:
            child.start(self.env)
        while not self.stopping:
            time.sleep(0.2)
            for child in self.children:
                if not child.alive() and not self.stopping:
                    self._restart(child)
        self.stop()

    def _restart(self, child: Child) -> None:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < 60] + [now]
        code = child.process.returncode if child.process else None
        if len(child.restarts) > 5:
            say(f"{child.name} keeps exiting (last code {code}); stopping everything")
            self.stopping = True
            return
        say(f"{child.name} exited with {code}; restarting")
        child.start(self.env)

    def stop(self) -> None:
        say("stopping: receiver and workers finish what they are doing")
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{child.name} did not stop in time; killing it")
                child.process.kill()
                child.process.wait()


def run(settings: Settings, environ: Mapping[str, str], *, host: str, port: int, workers: int) -> int:
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(environ)
    env.update(dev_secrets(settings, data_dir))
    env["RELAY_DATA_DIR"] = str(data_dir)
    if not settings.callback_allow_nets:
        # Local callbacks are what dev is for; `serve` and `worker` keep the strict default.
        env["RELAY_CALLBACK_ALLOW_NETS"] = DEV_ALLOW_NETS
    redis_server: RedisServer | None = None
    if settings.redis_url is None:
        redis_server = RedisServer(data_dir / "redis")
        redis_server.start()
        env["RELAY_REDIS_URL"] = redis_server.url
        say(f"redis-server (AOF, fsync always) at {redis_server.url}, data in {redis_server.data_dir}")
    else:
        say("using RELAY_REDIS_URL; not starting Redis")
    command = [sys.executable, "-m", "workers.cli"]
    children = [Child("receiver", [*command, "serve", "--host", host, "--port", str(port)])]
    children += [Child(f"worker-{n}", [*command, "worker"]) for n in range(1, workers + 1)]
    children.append(Child("scheduler", [*command, "scheduler"]))
    say(f"receiver on http://{host}:{port}, {workers} worker(s), polling scheduler; Ctrl-C stops everything")
    say(f"secrets for curl: . {data_dir / 'secrets.env'}")
    try:
        Supervisor(children, env).run()
    finally:
        if redis_server is not None:
            redis_server.stop()
        say("stopped")
    return 0
