"""End-to-end latency: from ingest's 200 to the sink's receipt, at half the highest rate the relay
keeps up with (found by open-loop probes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from bench import load
from bench.drive import send_at, wait_for_sink
from bench.plan import Plan
from bench.stack import CLIENT_SECRET, Stack
from workers.inbox import notification_id

PROBES = 8
PROBE_STEP = 0.8
KEPT_UP_SECONDS = 0.5
SENT_AT_LEAST = 0.95


def e2e_run(
    stack: Stack, plan: Plan, directory: Path, url: str, drain_rate: float, stores: list[int],
    instances: dict[int, int],
) -> dict[str, Any]:  # fmt: skip
    sustainable, probes = sustainable_rate(stack, plan, directory, url, drain_rate, stores)
    rate = sustainable / 2
    hooks = load.webhooks("e2e", max(int(rate * plan.e2e_seconds), 20), stores, CLIENT_SECRET)
    requests, accepted_file = directory / "e2e.txt", directory / "e2e-accepted.json"
    load.write_requests(requests, hooks)
    stack.sink_reset()
    # From a compact AOF, as each ingest run starts: a rewrite left due by the probes' and earlier runs'
    # writes otherwise lands in this run or not by chance (p99 60-140 ms in runs it met, 20-40 without).
    forks = stack.compact_aof()
    sent = send_at(f"{url}/events/ecwid", requests, rate, accepted_file)
    wait_for_sink(stack, len(hooks), timeout=60)
    forks = stack.forks() - forks
    arrived = dict(stack.sink_dump())
    accepted = orjson.loads(accepted_file.read_bytes())
    latencies = sorted(
        arrived[notification_id(hook.store_id, hook.event_id, instances[hook.store_id])] - accepted[str(n)]
        for n, hook in enumerate(hooks)
    )
    ms = [value * 1000 for value in latencies]
    return {
        "rate": rate, "sustainable_rate": sustainable, "probes": probes, "events": len(hooks),
        "ingest_p99_ms": sent["p99_ms"], "p50_ms": ms[len(ms) // 2], "p99_ms": ms[int(len(ms) * 0.99)],
        "max_ms": ms[-1], "aof_rewrites": forks,
    }  # fmt: skip


def sustainable_rate(
    stack: Stack, plan: Plan, directory: Path, url: str, drain_rate: float, stores: list[int]
) -> tuple[float, list[dict[str, Any]]]:
    """The highest steady arrival rate the relay keeps up with, from the rate it delivered while
    ingesting down by PROBE_STEP a probe.

    A probe sends at a fixed rate for `plan.probe_seconds` (open loop). It is sustained when the
    load generator did send at that rate (SENT_AT_LEAST of it: else the two cores could not even
    carry the load) and every event reached the sink within KEPT_UP_SECONDS of the last one being
    accepted (no backlog built up: a relay slower than the offered rate by a fraction f falls
    f × probe_seconds behind).
    """
    rate, probes = drain_rate, []
    requests = directory / "probe.txt"
    for attempt in range(PROBES):
        hooks = load.webhooks(f"probe{attempt}", max(int(rate * plan.probe_seconds), 10), stores, CLIENT_SECRET)
        load.write_requests(requests, hooks)
        stack.sink_reset()
        sent = send_at(f"{url}/events/ecwid", requests, rate)
        end = time.monotonic() + KEPT_UP_SECONDS
        while stack.sink_count() < len(hooks) and time.monotonic() < end:
            time.sleep(0.01)
        kept_up = stack.sink_count() >= len(hooks)
        sent_rate = len(hooks) / sent["seconds"]
        sustained = kept_up and sent_rate >= SENT_AT_LEAST * rate
        probes.append({"rate": round(rate, 1), "sent_rate": round(sent_rate, 1), "kept_up": kept_up,
                       "sustained": sustained})  # fmt: skip
        if sustained:
            return rate, probes
        wait_for_sink(stack, len(hooks), timeout=120)  # let the backlog drain before the next probe
        rate *= PROBE_STEP
    return rate, probes
