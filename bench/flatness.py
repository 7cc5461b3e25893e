"""Flatness over instance counts: every scale measured at the same time.

Each scale (1, 100, 10,000 instances, one store each, events spread over all of them) gets a stack of
its own: Redis, sink, receiver, its instances created once. In each round the scales are loaded
together: one wrk per receiver, closed loop, started at once; then a backlog per stack drained by
fresh workers of its own, let in at once. What the round compares is what one event costs the
process that handles it, at each scale, over the same seconds.

Why at the same time: on the shared two-core machine a neighbour's load moves the CPU time of the
same work by 20-30% from one run to the next, seconds apart (2026-11-27: one scale's eight 1-s
ingest turns ranged from 215 to 329 µs a request). Measured one after another, even in alternating
turns, the scales differed by that noise more than by their own cost; measured together, a spell
of load falls on all of them at once. The price: the processes share the cores, so the absolute
figures are higher than a scale measured alone (the 1-instance runs of bench/scale.py are those).

The table's figure for each scale is its median over the rounds; the flatness targets compare the
scales within each round and take the median of those ratios (bench/report.py). Redis commands per
event come from one more drain
of each scale, alone: they are counted, not timed, and polling that goes by time would count more in
a drain slowed down by sharing.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench import load
from bench.drive import clear_inbox
from bench.plan import Plan
from bench.scale import checked_ingest, drain, hold_backlog, let_in, prepare_ingest, warm_up
from bench.stack import Process, Stack, cpu_seconds

T = TypeVar("T")


@dataclass
class _Scale:
    count: int
    stack: Stack
    stores: list[int]
    receiver: Process
    url: str
    workers: list[Process] = field(default_factory=list)


def measure(plan: Plan, directory: Path, workers: int) -> dict[str, Any]:
    """Ingest and delivery at every scale of `plan`, all scales together, `plan.flat_rounds` rounds.
    Returns per scale every round's figures, their medians, and the Redis commands per event of a
    drain of `plan.deliveries` at that scale alone. Raises if a run is not valid (an error answer, an
    event not queued or not delivered)."""
    directory.mkdir(exist_ok=True)
    with ExitStack() as exits:
        scales = [_set_up(exits, plan, directory, count) for count in plan.scales]
        # Redis commands per event from a drain of each scale alone, on its fresh stack as the 1-instance
        # figure is: drained together, each drain takes three times as long, and the workers' polling and
        # RQ's upkeep, which go by time, not by event, would count three times over.
        alone = [_drain_alone(scale, plan, directory, workers) for scale in scales]
        ingest = [_ingest_together(scales, plan, directory, n) for n in range(plan.flat_rounds)]
        for scale in scales:
            clear_inbox(scale.stack)
        drains = [_drain_together(scales, plan, directory, n, workers) for n in range(plan.flat_rounds)]
    return {
        str(scale.count): {
            **_summary([run[i] for run in ingest], [run[i] for run in drains]),
            "redis_commands_per_event": alone[i]["commands"] / alone[i]["delivered"],
            "alone": alone[i],
        }  # fmt: skip
        for i, scale in enumerate(scales)
    }


def _set_up(exits: ExitStack, plan: Plan, directory: Path, count: int) -> _Scale:
    stack = exits.enter_context(Stack(directory / f"scale{count}"))
    stores = sorted(stack.create_instances(count))
    receiver, url = stack.receiver()
    warm_up(plan, directory, url, f"flat{count}", stores)
    clear_inbox(stack)  # the warm-up's events: a drain would deliver them with its own
    return _Scale(count, stack, stores, receiver, url)


def _together(scales: list[_Scale], work: Callable[[_Scale], T]) -> list[T]:
    """`work` for every scale, each in a thread of its own, started together."""
    start = threading.Barrier(len(scales))

    def one(scale: _Scale) -> T:
        start.wait()
        return work(scale)

    with ThreadPoolExecutor(len(scales)) as pool:
        return list(pool.map(one, scales))


def _ingest_together(scales: list[_Scale], plan: Plan, directory: Path, n: int) -> list[dict[str, Any]]:
    prepared = {}
    for scale in scales:
        clear_inbox(scale.stack)
        name = f"flat{scale.count}-{n}"
        prepared[scale.count] = prepare_ingest(scale.stack, plan, directory, name, scale.stores, plan.flat_seconds)

    def load_one(scale: _Scale) -> tuple[load.Throughput, float]:
        cpu = cpu_seconds(scale.receiver.pid)
        result = load.throughput(f"{scale.url}/events/ecwid", prepared[scale.count][0], connections=plan.connections,
                                 seconds=plan.flat_seconds)  # fmt: skip
        return result, (cpu_seconds(scale.receiver.pid) - cpu) / result.requests * 1e6

    return [
        {**asdict(result), "cpu_us": cpu_us, "queued": checked_ingest(scale.stack, plan, result, plan.flat_seconds),
         "aof_rewrites": scale.stack.forks() - prepared[scale.count][1]}
        for scale, (result, cpu_us) in zip(scales, _together(scales, load_one), strict=True)
    ]  # fmt: skip


def _drain_together(
    scales: list[_Scale], plan: Plan, directory: Path, n: int, workers: int
) -> list[dict[str, Any]]:  # fmt: skip
    events = plan.flat_deliveries
    try:
        for scale in scales:
            name = f"flatdlv{scale.count}-{n}"
            scale.workers = hold_backlog(scale.stack, directory, scale.url, name, scale.stores, events, workers)
        return _together(scales, lambda scale: let_in(scale.stack, scale.workers, events))
    finally:
        for scale in scales:
            for process in scale.workers:
                scale.stack.stop(process)
            scale.workers = []


def _drain_alone(scale: _Scale, plan: Plan, directory: Path, workers: int) -> dict[str, Any]:
    pool: list[Process] = []
    try:
        return drain(scale.stack, directory, scale.url, f"alone{scale.count}", scale.stores, plan.deliveries, workers,
                     pool)  # fmt: skip
    finally:
        for process in pool:
            scale.stack.stop(process)


def _summary(ingest: list[dict[str, Any]], drains: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ingest_rps": statistics.median(run["rps"] for run in ingest),
        "ingest_cpu_us": statistics.median(run["cpu_us"] for run in ingest),
        "deliveries_per_s": statistics.median(run["rate"] for run in drains),
        "delivery_cpu_us": statistics.median(run["cpu_us"] for run in drains),
        "ingest_rounds": [
            {
                "rps": run["rps"],
                "cpu_us": run["cpu_us"],
                "p99_ms": run["p99_ms"],
                "aof_rewrites": run["aof_rewrites"],
                "errors": run["errors"],
            }
            for run in ingest
        ],  # fmt: skip
        "drain_rounds": [
            {"rate": run["rate"], "cpu_us": run["cpu_us"], "delivered": run["delivered"]} for run in drains
        ],
    }
