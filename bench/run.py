"""The benchmark: every figure against its ceiling, measured in the same run.

    python -m bench [--quick] [--workers N] [--out bench/results.json]

Phases (docs/performance.md explains each):
1. ceilings: a bare Starlette endpoint (same uvicorn options, load and concurrency), and N processes
   running a plain httpx POST loop to the same sink;
2. at 1 instance: ingest throughput and latency (the best of two runs, and paced at half the
   bare rate), then deliveries/s from ingest to the sink with N workers (draining a backlog
   ingested before they start, with Redis commands counted around it; then while as many events
   are ingested), then end-to-end latency at half the highest rate kept up with;
3. flatness: 1, 100 and 10,000 instances (one store each, events spread over all of them), each on
   a stack of its own, loaded at the same time: closed-loop ingest, then backlog drains
   (bench/flatness.py);
4. the ceilings again (each keeps the higher of its two measurements);
5. Redis memory per queued event, 1 KB payload: in the inbox, and as delivery jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import flatness, load, report
from bench.drive import send_all
from bench.plan import Plan
from bench.scale import at_scale
from bench.stack import CLIENT_SECRET, Stack, cpu_seconds
from workers import envelope, keys, logs
from workers.dispatcher import Dispatcher
from workers.inbox import InboxItem
from workers.instances import Instance


def main() -> None:
    parser = argparse.ArgumentParser(description="ecwid-relay benchmark: figures against their ceilings")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (CI); figures are rough")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2, one per core)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()
    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so every process this run started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logs.configure("warning", role="bench")
    results = run(Plan.quick() if args.quick else Plan.full(), args.workers, quick=args.quick)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report.table(results))
    print(f"\nwritten to {args.out}")


def run(plan: Plan, workers: int, *, quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp, Stack(Path(tmp)) as stack:
        directory = Path(tmp)
        results: dict[str, Any] = {
            "quick": quick,
            "machine": machine(stack),
            "plan": {**asdict(plan), "order_changes": load.REPEATS},
        }
        # Each ceiling is measured before and after the relay's runs and the higher one is kept: on a
        # shared machine that errs against the relay, never for it.
        say("ceilings: bare Starlette endpoint, plain httpx loops")
        bare = [ingest_ceiling(stack, plan, directory, paced=True)]
        # Ingest latency is also measured offered half the bare endpoint's rate (the target's rate),
        # paced, as the bare endpoint was: a closed loop's latency at saturation is set by its
        # connection count (32 connections at 3,000 req/s wait 10.7 ms on average whatever the server).
        paced_rate = bare[0].get("paced", {}).get("rate")
        loops = [delivery_ceiling(stack, plan, directory, workers)]
        say("1 instance: ingest, delivery, end-to-end")
        ingest, delivery, e2e, rss = at_scale(stack, plan, directory, 1, workers, paced_rate=paced_rate)
        results["ingest"] = {"relay": {"1": ingest}}
        results["delivery"] = {"relay": {"1": delivery}}
        results["e2e"] = e2e
        results["memory"] = {"receiver_peak_rss_mib": rss[0], "worker_peak_rss_mib": rss[1]}
        say(f"flatness: {' / '.join(map(str, plan.scales))} instances, all at once, {plan.flat_rounds} rounds")
        results["flatness"] = flatness.measure(plan, directory / "flatness", workers)
        say("ceilings again")
        bare.append(ingest_ceiling(stack, plan, directory))
        loops.append(delivery_ceiling(stack, plan, directory, workers))
        results["ingest"]["bare"] = max(bare, key=lambda run: float(run["rps"]))
        results["ingest"]["bare_runs"] = [round(run["rps"]) for run in bare]
        results["ingest"]["bare_paced"] = bare[0].get("paced")
        results["delivery"]["ceiling"] = max(loops, key=lambda run: float(run["per_process"]))
        results["delivery"]["ceiling_runs"] = [round(run["per_process"]) for run in loops]
        say("Redis memory per queued event")
        results["memory"].update(queued_memory(stack, plan, directory))
        results["targets"] = report.targets(results, workers)
        return results


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def machine(stack: Stack) -> dict[str, Any]:
    info = stack.redis.info("server")
    persistence = stack.redis.config_get("append*")
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401

        loop = "uvloop + httptools"
    except ImportError:
        loop = "asyncio + h11"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform(),
        "redis": f"{info['redis_version']}, appendonly {persistence['appendonly']}, "
                 f"appendfsync {persistence['appendfsync']}, unix socket",
        "uvicorn": f"1 process, {loop}, the receiver's own options (workers/serve.py)",
        "generator": "wrk -t1 (bench/wrk.lua)" if load.have_wrk() else "bench.load (python asyncio; slower than wrk)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }  # fmt: skip


def ingest_ceiling(stack: Stack, plan: Plan, directory: Path, *, paced: bool = False) -> dict[str, Any]:
    """The bare endpoint's closed-loop rate; with `paced`, also its latency offered half that rate."""
    hooks = load.webhooks("bare", 20_000, [1], CLIENT_SECRET)
    requests = directory / "bare.txt"
    load.write_requests(requests, hooks)
    process, url = stack.bare()
    try:
        load.throughput(f"{url}/events/ecwid", requests, connections=plan.connections, seconds=plan.warmup_seconds)
        cpu = cpu_seconds(process.pid)
        result = load.throughput(f"{url}/events/ecwid", requests, connections=plan.connections,
                                 seconds=plan.ingest_seconds)  # fmt: skip
        cpu = cpu_seconds(process.pid) - cpu
        at_half = (
            load.paced(
                f"{url}/events/ecwid",
                requests,
                rate=round(result.rps / 2),
                connections=plan.paced_connections,
                seconds=plan.ingest_seconds,
            )  # fmt: skip
            if paced
            else None
        )
    finally:
        stack.stop(process)
    answer = {**asdict(result), "server_cpu_us_per_request": cpu / result.requests * 1e6}
    if at_half is not None:
        answer["paced"] = {**asdict(at_half), "held": at_half.held}
    return answer


def delivery_ceiling(stack: Stack, plan: Plan, directory: Path, workers: int) -> dict[str, Any]:
    body = directory / "notification.json"
    body.write_bytes(sample_notification(stack))
    start = time.monotonic() + 2.0
    loops = [subprocess.Popen([sys.executable, "-m", "bench.httpx_loop", f"{stack.sink_url}/hook",
                               str(plan.ceiling_seconds), str(start), str(body)], stdout=subprocess.PIPE, text=True)
             for _ in range(workers)]  # fmt: skip
    counts = [json.loads(loop.communicate()[0])["count"] for loop in loops]
    total = sum(counts) / plan.ceiling_seconds
    return {"processes": workers, "posts_per_s": total, "per_process": total / workers}


def sample_notification(stack: Stack) -> bytes:
    """A notification of the size the workers send in the delivery run."""
    hook = load.webhooks("sample", 1, [1_000_000], CLIENT_SECRET)[0]
    document = orjson.loads(hook.body)
    item = InboxItem(kind="webhook", store_id=hook.store_id, event_id=hook.event_id,
                     event_created=document["eventCreated"], event_type=document["eventType"],
                     entity_id=document["entityId"], data=document["data"], instances=(1,), received=time.time(),
                     raw=hook.body.decode())  # fmt: skip
    instance = Instance(id=1, owner="bench", name="bench 0", token="", auth="custom", store_id=hook.store_id,
                        configuration={"event.notification.enabled": "true"})  # fmt: skip
    return envelope.build(item, instance)


def queued_memory(stack: Stack, plan: Plan, directory: Path) -> dict[str, Any]:
    """Redis bytes per event with a 1 KB webhook body: in the inbox, then dispatched (waiting in the
    callback URL's pending list, with its event log record)."""
    stack.reset()
    instances = stack.create_instances(1)
    receiver, url = stack.receiver()
    try:
        hooks = load.webhooks("mem", plan.memory_events, sorted(instances), CLIENT_SECRET, payload=1024)
        requests = directory / "mem.txt"
        load.write_requests(requests, hooks)
        empty = stack.used_memory()
        send_all(f"{url}/events/ecwid", requests)
        if stack.inbox_length() != len(hooks):
            raise RuntimeError(f"memory run: {stack.inbox_length()} of {len(hooks)} events queued")
        inbox = stack.used_memory()
        dispatch_all(stack)
        jobs = stack.used_memory()
    finally:
        stack.stop(receiver)
    events = len(hooks)
    return {
        "payload_bytes": len(hooks[0].body),
        "inbox_bytes_per_event": (inbox - empty) / events,
        "queued_job_bytes_per_event": (jobs - empty) / events,
    }


def dispatch_all(stack: Stack) -> None:
    """Dispatch the inbox with the project's dispatcher, without delivering anything."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    connection = redis.Redis.from_url(stack.redis_server.url)
    queue = Queue(keys.DELIVERY_QUEUE, connection=connection, serializer=JSONSerializer)
    dispatcher = Dispatcher(connection, queue, "bench-memory", retention=7 * 24 * 3600)
    while dispatcher.step(block=0.01):
        pass
    dispatcher.release()
    connection.close()
