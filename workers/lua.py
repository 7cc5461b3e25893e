"""Lua scripts inside a MULTI: queued by their text, not by their SHA.

redis-py asks Redis whether a pipeline's scripts are loaded (`SCRIPT EXISTS`) before
every execute that holds one: a round trip more for each transaction on every
event's path (the dispatcher's, a runner's closing one). Queueing `EVALSHA` instead
is not safe: a script missing from Redis's cache (after a restart) fails at `EXEC`
while the transaction's other commands still run. `EVAL` cannot miss; what it costs
is the script's text on a local socket and a hash of it in Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.client import Pipeline
from redis.commands.core import Script


def call(script: Script, keys: Sequence[Any], args: Sequence[Any], pipe: Pipeline | None = None) -> Any:
    """Run `script` now (by SHA, loading it when Redis lost it), or queue it in `pipe` by its text."""
    if pipe is None:
        return script(keys=keys, args=args)
    text = script.script if isinstance(script.script, str) else bytes(script.script).decode()
    queue(pipe, text, keys, args)
    return None


def queue(pipe: Pipeline, script: str, keys: Sequence[Any], args: Sequence[Any]) -> None:
    """Queue the script `script` (its text) in `pipe`."""
    pipe.eval(script, len(keys), *keys, *args)
