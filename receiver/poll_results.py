"""POST /events/ecwid/{instanceId}?objectType=orders: polling results from an outside scheduler.

Someone who polls Ecwid themselves posts Ecwid's list response here
(`{"total", "count", "offset", "limit", "items": [...]}`), authenticated with
the instance's token (`Authorization: Element <token>`, cloud-elements.md §7).
The results are stored in the inbox (durably, before we answer) and classified,
deduplicated and forwarded by a worker exactly like the relay's own polling
results (workers/polling.py `ingest_results`). The answer is 202: accepted,
not yet forwarded.
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver import auth, bodies, metrics
from receiver.errors import BadRequest, Unauthorized, request_id
from receiver.services import services
from workers import keys
from workers.changes import OBJECTS
from workers.inbox import InboxItem

log = structlog.get_logger(logger_name="receiver.poll_results")

MAX_ITEMS = 1000


def is_poll_results(request: Request) -> bool:
    """True for a post of polling results rather than an Ecwid webhook."""
    header = request.headers.get("authorization", "")
    return "objectType" in request.query_params or "element" in auth.parse(header)


async def receive(request: Request) -> JSONResponse:
    app = services(request)
    instance_id = int(request.path_params["instance_id"])
    token = auth.parse(request.headers.get("authorization", "")).get("element")
    if not token:
        raise Unauthorized("polling results need Authorization: Element <instance token>")
    instance = await app.instances.by_token(instance_id, token)
    if instance is None:
        raise Unauthorized("the Element token does not belong to this instance")
    object_type = request.query_params.get("objectType", "")
    if object_type not in OBJECTS:
        raise BadRequest("objectType must be one of " + ", ".join(OBJECTS) + f", not {object_type[:40]!r}")
    body, document = await bodies.json_body(request)
    items = document.get("items")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise BadRequest("body must be an Ecwid list response: an object with an items array of objects")
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"at most {MAX_ITEMS} items per post; page with limit and offset")
    answer = {"requestId": request_id(request), "instances": [instance.id], "items": len(items)}
    if not instance.subscribed:
        return JSONResponse({**answer, "message": "events are not enabled for this instance; not forwarded"})
    now = time.time()
    item = InboxItem(
        kind="results", store_id=instance.store_id, event_id=uuid.uuid4().hex, event_created=int(now),
        event_type=object_type, entity_id=None, data=None, instances=(instance.id,), received=now,
        raw=body.decode("utf-8"),
    )  # fmt: skip
    await app.redis.lpush(keys.INBOX, item.dumps())
    metrics.ingested("results", True)
    log.info("poll.results_accepted", instance_id=instance.id, object_type=object_type, items=len(items))
    return JSONResponse({**answer, "message": "accepted; classified and forwarded shortly"}, status_code=202)
