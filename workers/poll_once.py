"""`ecwid-relay poll --once [--instance ID]`: polling rounds now, in this process.

For operators and tests. Rounds run even if not due, but still take the
per-instance lock, so this never overlaps a scheduled round. Forwarded changes
go through the inbox to the workers, as scheduled rounds' do. Prints one JSON
line per instance; exits 1 if any round failed.
"""

from __future__ import annotations

import sys

import orjson

from workers import keys, logs, polling
from workers.poll_store import PollStore
from workers.settings import Settings
from workers.worker import build_context


def run(settings: Settings, instance_id: int | None) -> int:
    logs.configure(settings.log_level, role="poll")
    ctx = build_context(settings)
    try:
        if instance_id is not None:
            ids = [instance_id]
        else:
            PollStore(ctx.redis).reconcile()
            ids = sorted(int(i) for i in ctx.redis.zrange(keys.POLL_DUE, 0, -1))  # type: ignore[arg-type]
        outcomes = [polling.poll_round(ctx, i, force=True) for i in ids]
    finally:
        ctx.client.close()
        ctx.ecwid.close()
    for outcome in outcomes:
        sys.stdout.write(orjson.dumps({"poll": outcome.as_dict()}).decode() + "\n")
    sys.stdout.flush()
    return 1 if any(o.outcome in ("failed", "disabled") for o in outcomes) else 0
