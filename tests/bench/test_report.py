"""The flatness figure: scales compared within each round, where they ran at the same moment."""

from __future__ import annotations

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
    # Round 3: a neighbour's load fell on the third scale alone (its median would be 160 against 140).
    scales = _scales([123, 179, 142, 130, 125], [120, 180, 140, 128, 126], [120, 168, 160, 131, 127])
    ratios = sorted([120 / 123, 168 / 180, 140 / 160, 128 / 131, 125 / 127])
    assert paired_flatness(scales, "ingest_rounds", "cpu_us") == ratios[2]
