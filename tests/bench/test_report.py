"""The flatness figure: scales compared within each round, where they ran at the same moment."""

from __future__ import annotations

import statistics
from typing import Any

from bench.report import paired_flatness


def _scales(*cpu_by_scale: list[float]) -> list[dict[str, Any]]:
    return [{"ingest_rounds": [{"cpu_us": cpu} for cpu in rounds]} for rounds in cpu_by_scale]


def test_rounds_that_differ_from_each_other_do_not_count_against_flatness() -> None:
    # Each round was 50% slower or faster than the others, but the same for every scale in it.
    scales = _scales([100, 150, 120], [100, 150, 120], [100, 150, 120])
    assert paired_flatness(scales, "ingest_rounds", "cpu_us") == 1.0


def test_a_scale_dearer_in_every_round_shows() -> None:
    scales = _scales([100, 150, 120], [100, 150, 120], [125, 187.5, 150])
    assert paired_flatness(scales, "ingest_rounds", "cpu_us") == 0.8


def test_a_spell_on_one_scale_in_one_round_does_not_decide_the_figure() -> None:
    # The 2026-11-28 00:00 run's rounds (ingest µs a request at 1 / 100 / 10,000 instances). In the third
    # a neighbour's load fell on the 10,000-instance scale alone; that round holds every scale's median,
    # so comparing the scales' medians gives 140 / 160 = 87.5%, under the target, on one spell.
    one, hundred, ten_thousand = [123, 179, 142], [120, 180, 140], [120, 168, 160]
    medians = [statistics.median(cpu) for cpu in (one, hundred, ten_thousand)]
    assert min(medians) / max(medians) == 0.875
    figure = paired_flatness(_scales(one, hundred, ten_thousand), "ingest_rounds", "cpu_us")
    assert figure == 168 / 180  # the rounds' ratios: 120/123, 168/180, 140/160; their median
