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
    stats = QueueStats(0, {"q": 0}, {"q": 0}, {"q": 0}, {"q": 0}, {"q": 0}, 0, 0, {"paused": 0})
    families = [*REGISTRY.collect(), *_Snapshot(stats).collect()]
    return {family.name for family in families if family.name.startswith("relay_")}


def test_the_metrics_table_lists_every_metric_and_nothing_else() -> None:
    table = OPERATIONS.split("| metric | type |", 1)[1].split("\n\n", 1)[0]
    documented = {name.removesuffix("_total") for name in re.findall(r"`(relay_[a-z_]+)`", table)}
    assert documented == exposed()
    assert len(documented) == 18


def test_the_readme_lists_every_command() -> None:
    commands = set(cli.parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert {name for name in commands if f"`ecwid-relay {name}" in table} == commands
    assert len(commands) == 11
