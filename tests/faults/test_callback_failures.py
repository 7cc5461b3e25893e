"""Scenario 4: a callback that fails (500, a hang past the deadline, a dropped connection,
429 with Retry-After) for a while, then recovers."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tests.faults.conftest import send
from tests.support.ecwid import create_custom
from tests.support.ledger import Answer, Figures, LedgerServer
from tests.support.processes import Receiver, Worker
from workers.settings import Settings
from workers.transport import TOTAL_TIMEOUT

# 17 first attempts fail in a row: under the pause threshold (20), so this is about retries, not
# pausing. Fewer hangs than workers, so that a hang never holds every worker.
MODES = {"http500": 5, "dropped": 5, "http429": 5, "hang": 2}


def mode_of(event_id: str) -> str:
    return event_id.split("-", 1)[0]


def misbehave(event_id: str, attempt: int) -> Answer:
    """The first attempt of each event fails its way; the endpoint then recovers."""
    if attempt > 1:
        return Answer()
    return {
        "http500": Answer(500),
        "dropped": Answer(drop=True),
        "http429": Answer(429, {"Retry-After": "1"}),
        # Answers 200, but only after the relay's deadline: the relay must count it failed.
        "hang": Answer(200, delay=TOTAL_TIMEOUT + 1.5),
    }[mode_of(event_id)]


def test_callback_failures_then_recovery(fault_settings: Settings, tmp_path: Path) -> None:
    ledger = LedgerServer(misbehave)
    receiver = Receiver(fault_settings, tmp_path / "receiver.log")
    workers = [Worker(fault_settings, tmp_path / f"worker-{n}.log", f"cb-w{n}") for n in range(3)]
    try:
        with receiver.client() as api:
            # Concurrency above the event count: retries never wait for a slot, so the gaps are the schedule's.
            create_custom(api, ledger.url, **{"event.notification.concurrency": 20})
            events = [f"{mode}-{n}" for mode, count in MODES.items() for n in range(count)]
            answers = send(api, events)
            assert set(answers.values()) == {200}
            waited = ledger.wait_delivered(events, timeout=150)
            # A hung attempt counts as delivered by the app (it answered, too late); wait for its retry.
            end = time.monotonic() + 60
            while any(sum(1 for a in ledger.arrivals if a.event_id == e) < 2 for e in events):
                assert time.monotonic() < end, "retries missing"
                time.sleep(0.1)
            time.sleep(1.0)  # and nothing more comes

        arrivals = list(ledger.arrivals)
        per_event = {event: [a for a in arrivals if a.event_id == event] for event in events}
        gaps = {mode: [] for mode in MODES}  # type: dict[str, list[float]]
        for event, seen in per_event.items():
            assert len(seen) == 2, (event, seen)  # one failure, one success: nothing more
            gaps[mode_of(event)].append(seen[1].at - seen[0].at)
        figures = Figures(
            "callback failures",
            set(events),
            arrivals,
            {"drained_s": f"{waited:.1f}",
             **{f"retry_gap_{mode}_s": f"{statistics.mean(g):.1f}" for mode, g in gaps.items()}},
        )  # fmt: skip
        figures.report()
        figures.assert_sound()
        # The only notifications that reached the app twice are those it answered too late.
        assert figures.duplicated == MODES["hang"]
        # Retry-After: 1 is honoured (not the 4 s schedule), and never undercut.
        assert min(gaps["http429"]) >= 0.9
        assert statistics.mean(gaps["http429"]) < statistics.mean(gaps["http500"])
        # The schedule's 4 s, less up to a second: RQ schedules in whole seconds.
        assert min(gaps["http500"]) >= 3.0 and min(gaps["dropped"]) >= 3.0
        logs = "".join(worker.logs() for worker in workers)
        assert logs.count('"event": "delivery.attempt_failed"') == len(events)
        assert logs.count('"event": "delivery.succeeded"') == len(events)
    finally:
        for worker in workers:
            worker.terminate()
        receiver.terminate()
        ledger.close()
