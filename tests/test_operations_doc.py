"""docs/operations.md and the README name real metrics and real commands, and all of them."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import receiver.metrics  # noqa: F401  (registers the receiver's counters)
import workers.metrics  # noqa: F401  (registers the workers' counters)
from receiver.probes import _Snapshot
from tests.conftest import ROOT
from workers import cli
from workers.queue_stats import QueueStats

OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
README = (ROOT / "README.md").read_text()


def exposed() -> set[str]:
    """Every relay_* family either process can serve (counters without their _total suffix)."""
    stats = QueueStats(0, 0, {"q": 0}, {"q": 0}, {"q": 0}, {"q": 0}, {"q": 0}, 0, 0, {"paused": 0})
    families = [*REGISTRY.collect(), *_Snapshot(stats).collect()]
    return {family.name for family in families if family.name.startswith("relay_")}


def test_the_metrics_table_lists_every_metric_and_nothing_else() -> None:
    table = OPERATIONS.split("| metric | type |", 1)[1].split("\n\n", 1)[0]
    documented = {name.removesuffix("_total") for name in re.findall(r"`(relay_[a-z_]+)`", table)}
    assert documented == exposed()
    assert len(documented) == 19


def test_the_readme_lists_every_command() -> None:
    commands = set(cli.parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert {name for name in commands if f"`ecwid-relay {name}" in table} == commands
    assert len(commands) == 11


def found(pattern: str, text: str) -> tuple[str, ...]:
    match = re.search(pattern, text)
    assert match, pattern
    return match.groups()


def test_shard_arithmetic_follows_from_the_measurements_it_cites() -> None:
    section = " ".join(OPERATIONS.split("**Measured cost of one event**", 1)[1].split("**The plan**", 1)[0].split())
    commands, fast, slow = found(r"\| \*\*(\d+)\*\* \(receiver \d+, worker \d+\) \| (\d\.\d)–(\d\.\d) ms", section)
    writes, per_event, by_commands = found(
        r"commands: ~([\d,]+) unpipelined writes/s ÷ (\d+) commands per event ≈ \*\*(\d+) events/s", section
    )
    assert per_event == commands
    assert abs(int(writes.replace(",", "")) / int(per_event) - int(by_commands)) < 10
    cpu_fast, cpu_slow, low, high = found(
        r"CPU: one core ÷ (\d\.\d)–(\d\.\d) ms .*?≈ \*\*(\d+)–(\d+) events/s\*\*", section
    )
    assert (cpu_fast, cpu_slow) == (fast, slow)
    assert abs(int(low) - 1000 / float(slow)) < 10 and abs(int(high) - 1000 / float(fast)) < 10
    [ceiling] = found(r"Take \*\*~(\d+) events/s\*\* as one shard's ceiling", section)
    assert int(low) <= int(ceiling) <= min(int(high), int(by_commands))
    [plan] = found(r"plan for \*\*(\d+) events/s sustained\*\*", section)
    assert int(plan) < int(ceiling) and f"**⌈L ÷ {plan}⌉**" in section
    shards = f"1,000 events/s needs {-(-1000 // int(plan))} shards; 5,000 events/s needs {-(-5000 // int(plan))}"
    assert shards in section
