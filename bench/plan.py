"""What a benchmark run measures, and for how long: the full run and the short one CI makes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    ingest_seconds: float
    warmup_seconds: float
    connections: int
    scales: tuple[int, ...]
    deliveries: int
    e2e_seconds: float
    ceiling_seconds: float
    memory_events: int
    max_ingest_rate: int  # sizes the file of unique signed webhooks
    probe_seconds: float  # each open-loop probe for the sustainable delivery rate

    @property
    def paced_connections(self) -> int:
        """Connections for paced ingest: enough that a free one is at hand for each send time."""
        return 4 * self.connections

    @classmethod
    def full(cls) -> Plan:
        # 10,000 deliveries a scale, not 3,000: two workers drained 3,000 in about a second, so a spell
        # of a neighbour's load moved a scale's CPU per event by up to 10% (2-3% with 10,000).
        return cls(8, 2, 32, (1, 100, 10_000), 10_000, 10, 8, 2000, 25_000, 5)

    @classmethod
    def quick(cls) -> Plan:
        # One-second runs (wrk's least): with both passes over two scales the smoke run takes about a
        # minute on a slow day of the shared machine (66 s on 2026-11-27, when the bare endpoint ran at
        # a third of its usual rate).
        return cls(1, 1, 16, (1, 100), 200, 1, 1, 200, 25_000, 1)
