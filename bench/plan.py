"""What a benchmark run measures, and for how long: the full run and the short one CI makes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    ingest_seconds: float  # each closed-loop and paced ingest run at 1 instance
    warmup_seconds: float
    connections: int
    scales: tuple[int, ...]  # instance counts, for the flatness rounds (bench/flatness.py)
    deliveries: int  # each backlog drain at 1 instance, and the delivery run while ingesting
    e2e_seconds: float
    ceiling_seconds: float
    memory_events: int
    max_ingest_rate: int  # sizes the file of unique signed webhooks
    probe_seconds: float  # each open-loop probe for the sustainable delivery rate
    flat_rounds: int  # flatness rounds, every scale loaded at once in each
    flat_seconds: float  # each round's ingest
    flat_deliveries: int  # each round's backlog drain, per scale

    @property
    def paced_connections(self) -> int:
        """Connections for paced ingest: enough that a free one is at hand for each send time."""
        return 4 * self.connections

    @classmethod
    def full(cls) -> Plan:
        # Five flatness rounds, not three: with three, one round's spell on one scale moved the median.
        # 10,000 deliveries a drain, not 3,000: two workers drained 3,000 in about a second, so a spell
        # of a neighbour's load moved a drain's CPU per event by up to 10% (2-3% with 10,000).
        return cls(
            ingest_seconds=8, warmup_seconds=2, connections=32, scales=(1, 100, 10_000), deliveries=10_000,
            e2e_seconds=10, ceiling_seconds=8, memory_events=2000, max_ingest_rate=25_000, probe_seconds=5,
            flat_rounds=5, flat_seconds=4, flat_deliveries=4_000,
        )  # fmt: skip

    @classmethod
    def quick(cls) -> Plan:
        # One-second runs (wrk's least), so that the smoke run stays near a minute on a slow day.
        return cls(
            ingest_seconds=1, warmup_seconds=1, connections=16, scales=(1, 100), deliveries=200,
            e2e_seconds=1, ceiling_seconds=1, memory_events=200, max_ingest_rate=25_000, probe_seconds=1,
            flat_rounds=2, flat_seconds=1, flat_deliveries=200,
        )  # fmt: skip
