"""deploy/redis.conf says what docs/operations.md promises: AOF, fsync always, no eviction."""

from __future__ import annotations

from tests.conftest import ROOT


def test_redis_conf_is_durable() -> None:
    lines = (ROOT / "deploy" / "redis.conf").read_text().splitlines()
    settings = dict(line.split(None, 1) for line in lines if line.strip() and not line.startswith("#"))
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "always"
    assert settings["maxmemory-policy"] == "noeviction"
