"""Is this Redis fit to hold the relay's events? Shared by `ecwid-relay redis check` and the
receiver's start-up warning (receiver/app.py).

The relay answers Ecwid's 200 only once an event is in Redis, so that Redis must keep
what it acknowledged: AOF on with `appendfsync always`, and `noeviction`, or a full
Redis silently drops queued events instead of refusing new ones (which Ecwid retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

MIN_VERSION = (6, 2)  # GETDEL, LMOVE and the SET options RQ 2+ and our scripts use
CHECKED = ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory")  # the CONFIG values we judge


@dataclass(frozen=True)
class Report:
    version: str
    config: dict[str, str | None]  # None: CONFIG is forbidden (managed Redis services)
    used_memory: int
    maxmemory: int | None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": not self.problems,
            "version": self.version,
            **{key.replace("-", "_"): value for key, value in self.config.items()},
            "usedMemory": self.used_memory,
            "maxmemory": self.maxmemory,
            "problems": self.problems,
        }


def problems(version: str, config: dict[str, str | None]) -> list[str]:
    """What is wrong with a Redis of this version and configuration, worst first. Pure."""
    found = []
    if config.get("appendonly") not in (None, "yes"):
        found.append("appendonly is not yes: a Redis restart loses every queued event")
    elif config.get("appendfsync") not in (None, "always"):
        found.append(
            f"appendfsync is {config['appendfsync']}, not always: a machine crash loses events we acknowledged"
        )
    if config.get("maxmemory-policy") not in (None, "noeviction"):
        found.append(f"maxmemory-policy is {config['maxmemory-policy']}, not noeviction: a full Redis drops events")
    elif config.get("maxmemory") == "0":
        found.append(
            "maxmemory is 0 (no limit): Redis grows until the machine kills it, and an AOF larger than memory "
            "never loads again; set maxmemory below the memory Redis may use"
        )
    if any(value is None for value in config.values()):
        found.append("CONFIG GET is not allowed: check appendonly, appendfsync and maxmemory-policy by hand")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_VERSION:
        found.append(f"Redis {version} is older than {'.'.join(map(str, MIN_VERSION))}")
    return found


async def inspect(connection: aioredis.Redis) -> Report:
    """Read version and configuration. Raises redis errors when Redis is unreachable."""
    server = await connection.info("server")
    memory = await connection.info("memory")
    config: dict[str, str | None] = {}
    for name in CHECKED:
        try:
            found: dict[Any, Any] = dict(await connection.config_get(name))
            config[name] = _text(found.get(name, found.get(name.encode())))
        except redis.exceptions.ResponseError:
            config[name] = None
    version = str(server.get("redis_version", "0"))
    maxmemory = int(memory.get("maxmemory", 0)) or None
    return Report(version, config, int(memory.get("used_memory", 0)), maxmemory, problems(version, config))


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
