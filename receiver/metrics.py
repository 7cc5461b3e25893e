"""Receiver counters: events ingested, deduplicated and rejected.

They live in this process's default prometheus-client registry; receiver/probes.py
serves them at `GET /metrics` with the queue depths. This module imports nothing of
ours, so errors.py and the ingest modules can count without import cycles.
"""

from __future__ import annotations

from prometheus_client import Counter
from starlette.requests import Request

INGESTED = Counter(
    "relay_events_ingested",
    "Events durably queued: webhook, ion (legacy form posts) or results (posted polls).",
    ["kind"],
)
DEDUPLICATED = Counter("relay_events_deduplicated", "Events answered as duplicates of an accepted eventId.", ["kind"])
REJECTED = Counter(
    "relay_events_rejected",
    "Posts to /events/ecwid refused, by reason: bad_request, unauthorized, payload_too_large, "
    "unsupported_media_type, unavailable (Redis down), client_disconnected.",
    ["reason"],
)
INGEST_PATH = "/events/ecwid"


# Each label's child looked up once, not per event (labels() locks and hashes every time).
_COUNTERS = {
    **{(kind, True): INGESTED.labels(kind=kind) for kind in ("webhook", "ion", "results")},
    **{(kind, False): DEDUPLICATED.labels(kind=kind) for kind in ("webhook", "ion")},
}


def ingested(kind: str, queued: bool) -> None:
    """Count an event that was accepted (`queued`) or found to be a duplicate."""
    counter = _COUNTERS.get((kind, queued))
    (counter or (INGESTED if queued else DEDUPLICATED).labels(kind=kind)).inc()


def rejected(request: Request, reason: str) -> None:
    """Count a refused post, if it was a post of events (other APIs' errors are not events)."""
    if request.url.path.startswith(INGEST_PATH):
        REJECTED.labels(reason=reason).inc()
