"""Flatness over instance counts, measured in turns.

Each scale (1, 100, 10,000 instances, one store each, events spread over all of them) gets a stack of
its own: Redis, sink, receiver, its instances created once. The scales then take turns, in rounds
whose order alternates (1, 100, 10,000, then 10,000, 100, 1, ...): first short closed-loop ingest
runs, then backlog drains with fresh workers. A spell of a neighbour's load on the shared machine
thus falls on every scale alike, and no scale is always the last one measured. Measured one scale
after another, the same code's CPU per event moved by up to 20% between runs minutes apart, more
than the difference the targets are about.

Each scale's figure is the median over its turns. The stacks that are not taking their turn are
idle: their processes wait on sockets.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.drive import clear_inbox
from bench.plan import Plan
from bench.scale import drain, ingest_once, warm_up
from bench.stack import Process, Stack


@dataclass
class _Scale:
    count: int
    stack: Stack
    stores: list[int]
    receiver: Process
    url: str


def turns(counts: tuple[int, ...], rounds: int) -> list[int]:
    """The order the scales take their turns in: `rounds` rounds, every other one reversed."""
    order: list[int] = []
    for round_ in range(rounds):
        order.extend(counts if round_ % 2 == 0 else reversed(counts))
    return order


def measure(plan: Plan, directory: Path, workers: int) -> dict[str, Any]:
    """Ingest and delivery at every scale of `plan`, in turns. Returns the order of the turns and, per
    scale, every turn's figures, their medians, and the Redis commands per event of its first drain."""
    order = turns(plan.scales, plan.flat_rounds)
    directory.mkdir(exist_ok=True)
    with ExitStack() as exits:
        scales = {count: _set_up(exits, plan, directory, count) for count in plan.scales}
        ingest: dict[int, list[dict[str, Any]]] = {count: [] for count in plan.scales}
        for n, count in enumerate(order):
            scale = scales[count]
            clear_inbox(scale.stack)
            run = f"flat{count}-{n}"
            turn = ingest_once(scale.stack, plan, directory, scale.receiver, scale.url, run, scale.stores,
                               plan.flat_seconds)  # fmt: skip
            ingest[count].append(turn)
        for scale in scales.values():
            clear_inbox(scale.stack)
        drains: dict[int, list[dict[str, Any]]] = {count: [] for count in plan.scales}
        for n, count in enumerate(order):
            scale, pool = scales[count], list[Process]()
            try:
                run = f"flatdlv{count}-{n}"
                drains[count].append(
                    drain(scale.stack, directory, scale.url, run, scale.stores, plan.flat_deliveries, workers, pool)
                )
            finally:
                for process in pool:
                    scale.stack.stop(process)
    return {
        "order": order,
        "scales": {str(count): _summary(ingest[count], drains[count], plan.flat_deliveries) for count in plan.scales},
    }


def _set_up(exits: ExitStack, plan: Plan, directory: Path, count: int) -> _Scale:
    stack = exits.enter_context(Stack(directory / f"scale{count}"))
    stores = sorted(stack.create_instances(count))
    receiver, url = stack.receiver()
    warm_up(plan, directory, url, f"flat{count}", stores)
    return _Scale(count, stack, stores, receiver, url)


def _summary(ingest: list[dict[str, Any]], drains: list[dict[str, Any]], events: int) -> dict[str, Any]:
    return {
        "ingest_rps": statistics.median(run["rps"] for run in ingest),
        "ingest_cpu_us": statistics.median(run["server_cpu_us_per_request"] for run in ingest),
        "deliveries_per_s": statistics.median(run["rate"] for run in drains),
        "delivery_cpu_us": statistics.median(run["cpu_us"] for run in drains),
        "redis_commands_per_event": drains[0]["commands"] / events,
        "busiest_commands": drains[0]["busiest"],
        "ingest_turns": [
            {
                "rps": run["rps"],
                "cpu_us": run["server_cpu_us_per_request"],
                "p99_ms": run["p99_ms"],
                "aof_rewrites": run["aof_rewrites"],
                "errors": run["errors"],
            }
            for run in ingest
        ],  # fmt: skip
        "drain_turns": [
            {"rate": run["rate"], "cpu_us": run["cpu_us"], "delivered": run["delivered"]} for run in drains
        ],
    }
