"""Scenario 1: `kill -9` a worker in the middle of a delivery, 20 times across 500 events."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.faults.conftest import send, subscribe
from tests.support.ledger import Answer, Figures, LedgerServer
from tests.support.processes import Receiver, Worker
from workers import pending
from workers.inbox import InboxItem
from workers.settings import Settings

EVENTS = 500
KILLS = 20
WORKERS = 4


def webhook_ids_of(r: redis.Redis, job_id: str) -> set[str]:
    """The notification ids a delivery job carries: one, or what a URL's runner took
    (workers/pending.py)."""
    job = Job.fetch(job_id, connection=r, serializer=JSONSerializer)
    runner = job.func_name == "workers.batches.run_pending"
    deliveries = pending.carried(r, job_id) if runner else [job.args[:2]]
    return {InboxItem.loads(item).notification_id(int(instance_id)) for item, instance_id in deliveries}


# Alone it takes 87-110 s (500 deliveries held 0.2 s each at the callback, 20 kills and their
# recoveries), and its own waits allow more: the suite's default of 120 s cut a slow run short.
@pytest.mark.timeout(300)
def test_worker_killed_mid_delivery_loses_nothing(fault_settings: Settings, tmp_path: Path) -> None:
    # Each delivery takes 0.2 s at the callback, so a busy worker is caught with a request on the wire.
    ledger = LedgerServer(lambda event_id, attempt: Answer(delay=0.2))
    r = redis.Redis.from_url(fault_settings.redis_url or "")
    receiver = Receiver(fault_settings, tmp_path / "receiver.log")
    spawned = 0

    def spawn(wait: bool = True) -> Worker:
        nonlocal spawned
        spawned += 1
        return Worker(fault_settings, tmp_path / f"worker-{spawned}.log", f"kill-w{spawned}", wait=wait)

    workers = [spawn() for _ in range(WORKERS)]
    try:
        with receiver.client() as api:
            subscribe(api, ledger.url)
            events = [f"kill-{n}" for n in range(EVENTS)]
            answers: dict[str, int | str] = {}
            sender = threading.Thread(target=send, args=(api, events), kwargs={"into": answers})
            sender.start()

            # (when, the webhook ids on the wire, the ids its job had taken and not sent yet)
            kills: list[tuple[float, set[str], set[str]]] = []
            end = time.monotonic() + 120
            while len(kills) < KILLS and time.monotonic() < end:
                for index, worker in enumerate(workers):
                    if len(kills) >= KILLS or not worker.alive():
                        continue
                    running = r.smembers(f"rq:worker:{worker.name}:executions")
                    try:
                        jobs = {i for m in running for i in webhook_ids_of(r, m.decode().rsplit(":", 1)[0])}
                    except NoSuchJobError:
                        continue  # it finished meanwhile
                    # Mid-delivery: the callback holds one of this worker's requests and has not answered yet.
                    flying = {job for job in jobs if ledger.in_flight[job] > 0}
                    if not flying:
                        continue
                    worker.kill()
                    arrived = {a.webhook_id for a in list(ledger.arrivals)}
                    kills.append((time.monotonic(), flying, jobs - arrived - flying))
                    workers[index] = spawn(wait=False)
                    time.sleep(0.3)  # let the others take the next jobs
                time.sleep(0.02)
            sender.join(60)
            assert len(kills) == KILLS, f"only {len(kills)} workers were caught mid-delivery"

            accepted = {event for event, status in answers.items() if status == 200}
            assert accepted == set(events), {e: s for e, s in answers.items() if s != 200}
            waited = ledger.wait_delivered(accepted, timeout=240)

        # Recovery: from each kill to the next arrival of what the victim was delivering (the
        # callback answered the cut-off attempt 200 to a dead socket, so wait for the retry itself).
        # What a killed batch had taken but not sent yet waits its turn behind that, through the
        # later kills (each holds a slot of the URL's limit until it is found dead): reported.
        end = time.monotonic() + 150

        def recovery(killed_at: float, webhook_id: str) -> float:
            while not (after := [a.at for a in ledger.arrivals if a.webhook_id == webhook_id and a.at > killed_at]):
                assert time.monotonic() < end, f"notification {webhook_id} of a killed worker never came again"
                time.sleep(0.1)
            return min(after) - killed_at

        recoveries = [recovery(killed_at, i) for killed_at, flying, _ in kills for i in flying]
        waits = [recovery(killed_at, i) for killed_at, _, taken in kills for i in taken] or [0.0]
        figures = Figures(
            "worker kill -9 x20",
            accepted,
            list(ledger.arrivals),
            {
                "kills": len(kills),
                "recovery_max_s": f"{max(recoveries):.1f}",
                "recovery_mean_s": f"{sum(recoveries) / len(recoveries):.1f}",
                "taken_unsent": len(waits),
                "taken_unsent_max_s": f"{max(waits):.1f}",
                "drained_after_sends_s": f"{waited:.1f}",
            },
        )
        figures.report()
        figures.assert_sound()
        # Bounded by the abandoned-job detection (workers/worker.py): about 13 s, not RQ's 10 minutes.
        assert max(recoveries) < 45, recoveries
        failed = [m.decode() for m in r.zrange("rq:failed:relay-deliveries", 0, -1)]
        assert failed == [], [
            {k: v for k, v in r.hgetall(f"rq:job:{job}").items() if k != b"data"} for job in failed[:1]
        ]
    finally:
        for worker in workers:
            worker.terminate()
        receiver.terminate()
        ledger.close()
        r.close()
