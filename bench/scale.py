"""The relay at one scale (instances defined, one store each, events spread over all of them):
closed-loop and paced ingest, backlog drains and delivery while ingesting, and end-to-end latency."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import load
from bench.drive import arrival_rate, clear_inbox, delivered, requests_file, send_all, wait_for_sink
from bench.latency import e2e_run
from bench.plan import Plan
from bench.stack import CLIENT_SECRET, Process, Stack, cpu_seconds, peak_rss_kib
from workers import keys


def at_scale(
    stack: Stack,
    plan: Plan,
    directory: Path,
    scale: int,
    workers: int,
    *,
    paced_rate: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], tuple[float, float]]:
    stack.reset()
    started = time.monotonic()
    instances = stack.create_instances(scale)
    stores = sorted(instances)
    setup_seconds = time.monotonic() - started
    receiver, url = stack.receiver()
    try:
        ingest = ingest_run(stack, plan, directory, receiver, url, str(scale), stores, RELAY_INGEST_RUNS)
        if paced_rate:
            ingest["paced"] = paced_ingest(stack, plan, directory, url, scale, stores, paced_rate)
        ingest["instances_setup_seconds"] = round(setup_seconds, 2)
        clear_inbox(stack)
        pool: list[Process] = []
        try:
            delivery = delivery_run(stack, plan, directory, url, f"dlv{scale}", stores, workers, pool)
            e2e = e2e_run(stack, plan, directory, url, delivery["deliveries_per_s_while_ingesting"], stores, instances)
            rss = (peak_rss_kib(receiver.pid) / 1024, peak_rss_kib(pool[0].pid) / 1024)
        finally:
            for process in pool:
                stack.stop(process)
    finally:
        stack.stop(receiver)
    return ingest, delivery, e2e, rss


def warm_up(plan: Plan, directory: Path, url: str, name: str, stores: list[int]) -> None:
    """Bring a receiver to its steady state: every store heard from once (the receiver caches each
    store's instances on its first event; a cold store costs one more round trip), then wrk's warm-up,
    as for the bare endpoint."""
    warm = directory / f"warm{name}.txt"
    load.write_requests(warm, load.webhooks(f"first{name}", len(stores), stores, CLIENT_SECRET))
    send_all(f"{url}/events/ecwid", warm)
    load.write_requests(warm, load.webhooks(f"warm{name}", 20_000, stores, CLIENT_SECRET))
    load.throughput(f"{url}/events/ecwid", warm, connections=plan.connections, seconds=plan.warmup_seconds)


def ingest_run(
    stack: Stack, plan: Plan, directory: Path, receiver: Process, url: str, name: str, stores: list[int],
    runs: int,
) -> dict[str, Any]:  # fmt: skip
    """The relay's closed-loop ingest, from its steady state: the best of `runs` runs, with every
    run's rate, receiver CPU per request and AOF rewrites."""
    warm_up(plan, directory, url, name, stores)
    done = []
    for attempt in range(runs):
        clear_inbox(stack)
        run = f"ing{name}-{attempt}"
        done.append(ingest_once(stack, plan, directory, receiver, url, run, stores, plan.ingest_seconds))
    best = max(done, key=lambda run: float(run["rps"]))
    return {
        **best, "runs": [round(run["rps"]) for run in done],
        "cpu_runs": [run["server_cpu_us_per_request"] for run in done],
        "aof_rewrite_runs": [run["aof_rewrites"] for run in done],
    }  # fmt: skip


# The relay's ingest figure is the best of this many runs, as the bare endpoint's is the best of two
# (before and after): a run that met a noisy neighbour counts for neither.
RELAY_INGEST_RUNS = 2


def ingest_once(
    stack: Stack, plan: Plan, directory: Path, receiver: Process, url: str, run: str, stores: list[int],
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """One closed-loop ingest run of `seconds` from a compact AOF: its rate, latency, receiver and Redis
    CPU per request and AOF rewrites. Raises unless every answered request was a queued, new event."""
    requests, forks = prepare_ingest(stack, plan, directory, run, stores, seconds)
    cpu = cpu_seconds(receiver.pid), cpu_seconds(stack.redis_pid)
    result = load.throughput(f"{url}/events/ecwid", requests, connections=plan.connections, seconds=seconds)
    cpu = cpu_seconds(receiver.pid) - cpu[0], cpu_seconds(stack.redis_pid) - cpu[1]
    return {
        **asdict(result), "queued": checked_ingest(stack, plan, result, seconds),
        "server_cpu_us_per_request": cpu[0] / result.requests * 1e6,
        "redis_cpu_us_per_request": cpu[1] / result.requests * 1e6, "aof_rewrites": stack.forks() - forks,
    }  # fmt: skip


def prepare_ingest(
    stack: Stack, plan: Plan, directory: Path, run: str, stores: list[int], seconds: float
) -> tuple[Path, int]:
    """A file of more new signed webhooks than a closed-loop run of `seconds` can send, and the AOF
    compacted: returns the file and the fork count the run's AOF rewrites count from."""
    requests = requests_file(directory, run, int(plan.max_ingest_rate * seconds), stores)
    return requests, stack.compact_aof()


def checked_ingest(stack: Stack, plan: Plan, result: load.Throughput, seconds: float) -> int:
    """The inbox's length after a closed-loop run of `seconds` (`prepare_ingest`'s file). Raises unless
    every answered request was a durably queued, distinct event (the last few may still be in flight)."""
    available, queued = int(plan.max_ingest_rate * seconds), stack.inbox_length()
    if result.requests > available or queued < result.requests - plan.connections or result.errors:
        raise RuntimeError(f"ingest run is not valid: {result}, {queued} queued of {available} distinct")
    return queued


def paced_ingest(
    stack: Stack, plan: Plan, directory: Path, url: str, scale: int, stores: list[int], rate: float
) -> dict[str, Any] | None:
    """Ingest latency offered `rate` requests a second, paced (bench/wrk_paced.lua), every one a new event."""
    clear_inbox(stack)  # the closed-loop run's, with what was still in flight when it stopped
    available = int(rate * (plan.ingest_seconds + 1) * 1.1)
    requests = directory / f"paced{scale}.txt"
    load.write_requests(requests, load.webhooks(f"paced{scale}", available, stores, CLIENT_SECRET))
    forks = stack.compact_aof()
    result = load.paced(f"{url}/events/ecwid", requests, rate=rate, connections=plan.paced_connections,
                        seconds=plan.ingest_seconds)  # fmt: skip
    if result is None:
        return None
    queued = stack.inbox_length()
    # Every answered request must be a durably queued, distinct event (the last few may still be in flight).
    if result.sent > available or queued < result.requests - plan.paced_connections or result.errors:
        raise RuntimeError(f"paced ingest run is not valid: {result}, {queued} queued of {available} distinct")
    return {**asdict(result), "held": result.held, "queued": queued, "aof_rewrites": stack.forks() - forks}


def delivery_run(
    stack: Stack, plan: Plan, directory: Path, url: str, run: str, stores: list[int], workers: int,
    pool: list[Process],
) -> dict[str, Any]:  # fmt: skip
    """Deliveries/s with `workers` processes (started here, into `pool`): first draining a backlog
    ingested before they start, as the httpx loops have nothing else to do (the faster of
    DELIVERY_DRAINS drains, each with workers started afresh); then while as many events are being
    ingested, on the same two cores. Redis commands are counted around the first drain."""
    drains: list[dict[str, Any]] = []
    for attempt in range(DELIVERY_DRAINS):
        for process in pool:
            stack.stop(process)
        pool.clear()
        drains.append(drain(stack, directory, url, f"{run}-backlog{attempt}", stores, plan.deliveries, workers, pool))
    best, first = max(drains, key=lambda run: float(run["rate"])), drains[0]
    stack.sink_reset()
    sent = send_all(f"{url}/events/ecwid", requests_file(directory, run, plan.deliveries, stores))
    wait_for_sink(stack, plan.deliveries, timeout=60 + plan.deliveries / 50)
    return {
        "events": plan.deliveries, "delivered": best["delivered"], "deliveries_per_s": best["rate"],
        "worker_cpu_us_per_event": best["cpu_us"], "drain_runs": [round(run["rate"]) for run in drains],
        "drain_cpu_runs": [run["cpu_us"] for run in drains],
        "deliveries_per_s_while_ingesting": arrival_rate(stack), "delivered_while_ingesting": stack.sink_count(),
        "ingest_rps_while_delivering": sent["rps"], "ingest_errors": sent["errors"],
        "redis_commands_per_event": first["commands"] / plan.deliveries, "busiest_commands": first["busiest"],
    }  # fmt: skip


# The relay's backlog drain is the faster of this many, as its ingest is the best of two runs and the
# httpx loops' ceiling the better of two measurements: a neighbour's spell during one counts for neither.
DELIVERY_DRAINS = 2


def drain(
    stack: Stack, directory: Path, url: str, run: str, stores: list[int], count: int, workers: int,
    pool: list[Process],
) -> dict[str, Any]:  # fmt: skip
    """One backlog drain of `count` events by `workers` fresh processes (left running, in `pool`): the
    rate at the sink, the workers' CPU per event and the Redis commands from ingest to the last delivery."""
    before = stack.command_calls()
    pool.extend(hold_backlog(stack, directory, url, run, stores, count, workers))
    result = let_in(stack, pool, count)
    after = stack.command_calls()
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    busiest = dict(sorted(((n, c) for n, c in delta.items() if c > 0), key=lambda kv: -kv[1])[:12])
    return {**result, "commands": sum(delta.values()), "busiest": busiest}


def hold_backlog(
    stack: Stack, directory: Path, url: str, run: str, stores: list[int], count: int, workers: int
) -> list[Process]:  # fmt: skip
    """Ingest a backlog of `count` new events and start `workers` fresh processes, the backlog held
    back from them until `let_in`. Returns the processes."""
    stack.sink_reset()
    send_all(f"{url}/events/ecwid", requests_file(directory, run, count, stores))  # waits in the inbox
    # Held back until the workers are up and their CPU time is read: a small backlog was otherwise
    # delivered before the reading, and a worker's CPU per event came out as nothing.
    stack.redis.rename(keys.INBOX, HELD_INBOX)
    return stack.workers(workers)


def let_in(stack: Stack, workers: list[Process], count: int) -> dict[str, Any]:
    """Let the held backlog of `count` events in and wait until all are delivered: the rate at the sink
    and the workers' CPU per event. Raises unless the sink holds exactly `count` notifications."""
    cpu = sum(cpu_seconds(process.pid) for process in workers)
    stack.redis.rename(HELD_INBOX, keys.INBOX)
    wait_for_sink(stack, count, timeout=60 + count / 20)  # generous: other drains may share the cores
    cpu = sum(cpu_seconds(process.pid) for process in workers) - cpu
    drained = delivered(stack, count)
    return {"delivered": drained, "rate": arrival_rate(stack), "cpu_us": cpu / drained * 1e6}


HELD_INBOX = keys.INBOX + ":bench-held"
