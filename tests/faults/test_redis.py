"""Scenarios 2 and 3: Redis killed (kill -9, restarted on the same AOF) and Redis unreachable."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import AUTH
from tests.faults.conftest import send, subscribe
from tests.support.ecwid import post_webhook, webhook
from tests.support.ledger import Answer, Figures, LedgerServer
from tests.support.processes import Receiver, Worker
from workers.redis_server import RedisServer
from workers.settings import Settings


def resend_until_answered(api: httpx.Client, event_ids: list[str], timeout: float = 60) -> None:
    """What Ecwid does: post again whatever was not answered 200, until it is."""
    pending = list(event_ids)
    end = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < end, f"still refused after {timeout}s: {pending[:5]}"
        answers = send(api, pending)
        pending = [event for event, status in answers.items() if status != 200]
        if pending:
            time.sleep(0.2)


def test_redis_killed_and_restarted_loses_no_acknowledged_event(
    own_redis: RedisServer, fault_settings: Settings, tmp_path: Path
) -> None:
    # A callback slower than ingest, so that deliveries are queued, and under way, at the crash.
    ledger = LedgerServer(lambda event_id, attempt: Answer(delay=0.05))
    receiver = Receiver(fault_settings, tmp_path / "receiver.log")
    workers = [Worker(fault_settings, tmp_path / f"worker-{n}.log", f"redis-kill-w{n}") for n in range(2)]
    try:
        with receiver.client() as api:
            subscribe(api, ledger.url)
            events = [f"crash-{n}" for n in range(400)]
            answers: dict[str, int | str] = {}
            sender = threading.Thread(target=send, args=(api, events), kwargs={"into": answers})
            sender.start()
            end = time.monotonic() + 60
            while sum(1 for status in answers.values() if status == 200) < 150:
                assert time.monotonic() < end and sender.is_alive(), "the sender stalled before the crash"
                time.sleep(0.01)
            # Accepted but not yet delivered: in the inbox, the queue or the per-URL limiter's waiting set.
            queued = sum(1 for status in list(answers.values()) if status == 200) - len(ledger.delivered_ids())
            own_redis.kill()  # kill -9 while events arrive and deliveries are queued
            time.sleep(2.0)
            own_redis.start()  # the same data directory and AOF
            sender.join(120)

            acknowledged = {event for event, status in answers.items() if status == 200}
            refused = [event for event, status in answers.items() if status != 200]
            ledger.wait_delivered(acknowledged, timeout=120)
            # Whatever was refused, Ecwid sends again; the relay takes it now.
            resend_until_answered(api, refused)
            ledger.wait_delivered(events, timeout=120)

        figures = Figures(
            "redis kill -9 + restart on AOF",
            set(events),
            list(ledger.arrivals),
            {"answered_200_first_time": len(acknowledged), "undelivered_at_crash": queued,
             "refused_then_resent": len(refused),
             "503s": sum(1 for s in answers.values() if s == 503)},
        )  # fmt: skip
        figures.report()
        figures.assert_sound()
        assert refused, "the crash should have refused some events"
        assert queued > 0, "nothing was queued at the crash"
        assert all(status in (200, 503) for status in answers.values()), set(answers.values())
        assert all(worker.alive() for worker in workers), "workers must ride out the outage"
    finally:
        for worker in workers:
            worker.terminate()
        receiver.terminate()
        ledger.close()


def test_redis_unreachable_is_503_within_a_second_and_recovers(
    own_redis: RedisServer, fault_settings: Settings, ledger: LedgerServer, tmp_path: Path
) -> None:
    receiver = Receiver(fault_settings, tmp_path / "receiver.log")
    worker = Worker(fault_settings, tmp_path / "worker.log", "unreachable-w")
    assert own_redis.process is not None
    try:
        with receiver.client() as api:
            subscribe(api, ledger.url)
            assert send(api, ["before"]) == {"before": 200}
            ledger.wait_delivered(["before"], timeout=30)

            slowest = 0.0
            outage_events: list[str] = []
            # Hung (SIGSTOP: connections open, nothing answers), then gone (kill -9: refused).
            for phase in ("hung", "down"):
                if phase == "hung":
                    own_redis.process.send_signal(signal.SIGSTOP)
                else:
                    own_redis.process.send_signal(signal.SIGCONT)
                    own_redis.kill()
                for n in range(10):
                    event_id = f"{phase}-{n}"
                    outage_events.append(event_id)
                    started = time.monotonic()
                    response = post_webhook(api, webhook(event_id))
                    took = time.monotonic() - started
                    slowest = max(slowest, took)
                    assert response.status_code == 503, (event_id, response.status_code, response.text)
                    assert set(response.json()) == {"requestId", "message"}
                    assert took < 1.0, f"{event_id} took {took:.2f}s"
                listing = api.get("/instances", headers={"Authorization": AUTH})
                assert listing.status_code == 503
            down_at = time.monotonic()
            time.sleep(3.0)  # long enough for the worker to notice and back off
            own_redis.start()

            # No restart of anything but Redis: the same receiver and worker take and deliver again.
            resend_until_answered(api, outage_events + ["after"], timeout=30)
            recovered = ledger.wait_delivered(outage_events + ["after"], timeout=60)
        figures = Figures(
            "redis unreachable",
            set(outage_events) | {"before", "after"},
            list(ledger.arrivals),
            {"503s": len(outage_events), "slowest_503_s": f"{slowest:.2f}",
             "delivered_after_restart_s": f"{time.monotonic() - down_at - 3.0 - recovered:.1f}+{recovered:.1f}"},
        )  # fmt: skip
        figures.report()
        figures.assert_sound()
        # Only "before" can come twice: delivered as Redis froze, its completion could not be recorded.
        assert figures.duplicated <= 1 and {a.event_id for a in ledger.arrivals if a.event_id != "before"} == set(
            outage_events
        ) | {"after"}
        assert len([a for a in ledger.arrivals if a.event_id != "before"]) == len(outage_events) + 1
        assert worker.alive() and receiver.alive()
    finally:
        if own_redis.process is not None and own_redis.process.poll() is None:
            own_redis.process.send_signal(signal.SIGCONT)
        worker.terminate()
        receiver.terminate()
