"""scripts/bench in its short mode: the harness runs end to end and its figures are sane.

No speed thresholds here (the machine is shared and noisy): the targets live in the
benchmark's own table. This checks that every figure was measured and is consistent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.timeout(240)
def test_quick_benchmark_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert "appendfsync always" in results["machine"]["redis"]
    assert results["plan"]["order_changes"] == 4 and "; each order changes 4 times" in run.stdout
    assert "| ingest req/s (1 instance) |" in run.stdout
    assert "| deliveries/s per process while ingesting as many (2 workers) |" in run.stdout

    bare, relay = results["ingest"]["bare"], results["ingest"]["relay"]
    assert set(relay) == {"1"}  # every scale is measured for flatness (below)
    for run_ in [bare, *relay.values()]:
        assert run_["requests"] > 0 and run_["rps"] > 0 and run_["errors"] == 0
        assert 0 < run_["p50_ms"] <= run_["p99_ms"] <= run_["max_ms"]
    for scale in relay.values():
        assert scale["queued"] >= scale["requests"] - results["plan"]["connections"]
        assert scale["aof_rewrites"] >= 0  # counted: a rewrite during a run is reported beside its figures
        assert len(scale["runs"]) == 2 and round(scale["rps"]) == max(scale["runs"])  # the best of two runs
        assert len(scale["aof_rewrite_runs"]) == 2 and scale["aof_rewrites"] in scale["aof_rewrite_runs"]
    first, second = relay["1"]["aof_rewrite_runs"]
    rewrites = f"{first} / {second} / {results['e2e']['aof_rewrites']}"
    assert f"| AOF rewrites during the ingest runs (1 instance) / the end-to-end run | {rewrites} |" in run.stdout

    # Flatness: each scale on a stack of its own, all loaded at once in each round; its figures are the
    # medians over the rounds, its Redis commands per event those of a drain alone.
    flatness, plan = results["flatness"], results["plan"]
    assert set(flatness) == {"1", "100"} and plan["flat_rounds"] == 2
    for scale in flatness.values():
        ingest_rounds, drain_rounds = scale["ingest_rounds"], scale["drain_rounds"]
        assert len(ingest_rounds) == len(drain_rounds) == 2
        for run_ in ingest_rounds:
            assert run_["rps"] > 0 and run_["cpu_us"] > 0 and run_["errors"] == 0 and run_["aof_rewrites"] >= 0
        assert all(run_["delivered"] == plan["flat_deliveries"] and 50 < run_["cpu_us"] < 1_000_000
                   for run_ in drain_rounds)  # fmt: skip
        assert scale["ingest_cpu_us"] == sum(run_["cpu_us"] for run_ in ingest_rounds) / 2  # the median of two
        assert scale["ingest_rps"] == sum(run_["rps"] for run_ in ingest_rounds) / 2
        assert scale["delivery_cpu_us"] == sum(run_["cpu_us"] for run_ in drain_rounds) / 2
        assert scale["deliveries_per_s"] == sum(run_["rate"] for run_ in drain_rounds) / 2
        alone = scale["alone"]
        assert alone["delivered"] == plan["deliveries"]
        assert scale["redis_commands_per_event"] == alone["commands"] / plan["deliveries"] >= 3
    assert "| ingest CPU µs per request at 1 / 100 instances, median of 2 rounds, all at once |" in run.stdout
    assert "| worker CPU µs per delivered event at 1 / 100 instances, median of 2 rounds, all at once |" in run.stdout
    assert "flatness: 1 / 100 instances, all at once, 2 rounds" in run.stderr
    # The targets compare the scales within each round (they ran at the same moment), then take the median
    # (of two rounds here: their mean).
    figures = {t["target"]: t["figure"] for t in results["targets"]}
    one, hundred = flatness["1"], flatness["100"]
    for target, rounds, cost, rate in [("ingest flat over instance counts: CPU per request (req/s)",
                                        "ingest_rounds", "cpu_us", "rps"),
                                       ("delivery flat over instance counts: CPU per event (deliveries/s)",
                                        "drain_rounds", "cpu_us", "rate")]:  # fmt: skip
        pairs = list(zip(one[rounds], hundred[rounds], strict=True))
        by_cost, by_rate = (
            sum(min(a[key], b[key]) / max(a[key], b[key]) for a, b in pairs) / 2 for key in (cost, rate)
        )
        assert figures[target] == f"{by_cost:.0%} ({by_rate:.0%})"

    # Latency offered half the bare endpoint's rate, paced (wrk only): the same rate for both.
    bare_paced, relay_paced = results["ingest"]["bare_paced"], relay["1"].get("paced")
    if shutil.which("wrk") is None:
        assert bare_paced is None and relay_paced is None
        assert "not measured (needs wrk)" in run.stdout
    else:
        assert bare_paced["rate"] == relay_paced["rate"]
        assert abs(bare_paced["rate"] - results["ingest"]["bare_runs"][0] / 2) <= 1  # (bare_runs are rounded)
        for paced in (bare_paced, relay_paced):
            assert paced["requests"] > 0 and paced["errors"] == 0 and 0 <= paced["late"] <= paced["sent"]
            assert 0 < paced["p50_ms"] <= paced["p99_ms"] <= paced["max_ms"]
            held = paced["rps"] >= 0.95 * paced["rate"] and paced["late"] <= 0.01 * paced["sent"]
            assert paced["held"] is held
        assert relay_paced["queued"] >= relay_paced["requests"] - 4 * results["plan"]["connections"]
        assert f"paced at {bare_paced['rate']:,.0f}/s (half the bare rate)" in run.stdout
        share = relay_paced["rate"] / relay["1"]["rps"]
        assert f"ms at {relay_paced['rate']:,.0f}/s ({share:.0%} of the relay's closed-loop rate)" in run.stdout

    delivery = results["delivery"]
    for scale in delivery["relay"].values():
        assert (
            scale["delivered"] == scale["delivered_while_ingesting"] == scale["events"] == results["plan"]["deliveries"]
        )
        assert scale["deliveries_per_s"] > 0 and scale["deliveries_per_s_while_ingesting"] > 0
        assert scale["ingest_errors"] == 0
        assert scale["redis_commands_per_event"] >= 3  # at least the dedup marker, the queue and the log
        # Counted from when the workers were ready, before the backlog was let in: never nothing.
        assert 50 < scale["worker_cpu_us_per_event"] < 1_000_000
        assert len(scale["drain_runs"]) == 2 and round(scale["deliveries_per_s"]) == max(scale["drain_runs"])
    assert delivery["ceiling"]["per_process"] > 0 and len(delivery["ceiling_runs"]) == 2

    e2e = results["e2e"]
    assert 0 < e2e["p50_ms"] <= e2e["p99_ms"] <= e2e["max_ms"] < 60_000
    assert e2e["aof_rewrites"] >= 0
    assert 0 < e2e["rate"] <= e2e["sustainable_rate"] / 2 + 1e-9 and len(e2e["probes"]) >= 1
    *missed, last = e2e["probes"]
    # Only the last probe counts as sustained, and only one the relay kept up with at the rate asked for.
    assert not any(probe["sustained"] for probe in missed)
    if last["sustained"]:
        assert last["kept_up"] and last["sent_rate"] >= 0.95 * last["rate"]
        assert last["rate"] == round(e2e["sustainable_rate"], 1)

    memory = results["memory"]
    assert memory["payload_bytes"] >= 1024
    assert memory["inbox_bytes_per_event"] > memory["payload_bytes"] / 2  # the body is held, compressed or not
    assert memory["queued_job_bytes_per_event"] > 0
    assert memory["receiver_peak_rss_mib"] > 10 and memory["worker_peak_rss_mib"] > 10

    named = {t["target"] for t in results["targets"]}
    assert named >= {
        "ingest vs bare endpoint",
        "ingest p99 offered 50% of the bare rate, paced",
        "ingest p99 at saturation (closed loop)",
        "Redis commands per delivered event",
    }
    assert all(isinstance(t["met"], bool) for t in results["targets"])
