"""The event log API: what happened to each notification of an instance, and replay.

    GET  /instances/{id}/events                  newest first; ?status=&from=&to=&pageSize=&nextPage=
    GET  /instances/{id}/events/{eventId}        one notification, every attempt
    POST /instances/{id}/events/{eventId}/replay send it again (same Elements-Webhook-Id)
    POST /instances/{id}/events/replay           send again what matches ?status=&from=&to=&limit=

`{eventId}` is the notification id (`Elements-Webhook-Id`) or Ecwid's own
`eventId`. The caller must own the instance (User + Organization, as /instances).
The next page's cursor comes in the `Elements-Next-Page-Token` header, as Cloud
Elements pages.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import auth, convertors  # noqa: F401  (convertors: {instance_id:instance_id})
from receiver.errors import BadRequest, Conflict, NotFound, request_id
from receiver.services import services
from workers import event_queries as queries
from workers.instances import Instance

MAX_PAGE = 200
NEXT_PAGE_HEADER = "Elements-Next-Page-Token"


async def _owned(request: Request) -> Instance:
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    return await app.instances.owned(request.path_params["instance_id"], owner)


def _number(request: Request, name: str, default: int, highest: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= highest:
        raise BadRequest(f"{name} must be a whole number from 1 to {highest}")
    return int(text)


def _filter(request: Request, default_status: str | None = None) -> queries.Filter:
    query = request.query_params
    try:
        return queries.parse_filter(query.get("status", default_status), query.get("from"), query.get("to"))
    except queries.QueryError as exc:
        raise BadRequest(str(exc)) from None


async def list_events(request: Request) -> JSONResponse:
    instance = await _owned(request)
    size = _number(request, "pageSize", 50, MAX_PAGE)
    try:
        found, cursor = await queries.page(
            services(request).redis, instance.id, _filter(request), size, request.query_params.get("nextPage")
        )
    except queries.QueryError as exc:
        raise BadRequest(str(exc)) from None
    return JSONResponse(found, headers={NEXT_PAGE_HEADER: cursor} if cursor else None)


async def get_event(request: Request) -> JSONResponse:
    instance = await _owned(request)
    return JSONResponse(await _one(request, instance))


async def _one(request: Request, instance: Instance) -> dict[str, object]:
    event = request.path_params["event_id"][:200]
    notification = queries.resolve(instance.id, instance.store_id, event)
    found = await queries.one(services(request).redis, instance.id, notification)
    if found is None:
        kept = _duration(services(request).settings.event_retention)
        raise NotFound(f"no event {event!r} in instance {instance.id}'s log (entries are kept for {kept})")
    return found


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds} second" + ("s" if seconds != 1 else "")


async def replay_event(request: Request) -> JSONResponse:
    instance = await _owned(request)
    found = await _one(request, instance)
    if found["status"] not in queries.REPLAYABLE:
        raise Conflict(f"event {found['id']} is still being delivered ({found['status']}); replay it once it ends")
    queued = await queries.request_replay(services(request).redis, instance.id, instance.store_id, [str(found["id"])])
    return JSONResponse({"requestId": request_id(request), "queued": queued, "ids": [found["id"]]}, status_code=202)


async def replay_events(request: Request) -> JSONResponse:
    instance = await _owned(request)
    wanted = _filter(request, default_status="FAILED")
    refused = [status for status in wanted.statuses if status not in queries.REPLAYABLE]
    if refused or not wanted.statuses:
        raise BadRequest("only finished deliveries can be replayed: status among " + ", ".join(queries.REPLAYABLE))
    limit = _number(request, "limit", 100, queries.MAX_REPLAY)
    app = services(request)
    try:
        found, cursor = await queries.page(app.redis, instance.id, wanted, limit, request.query_params.get("nextPage"))
    except queries.QueryError as exc:
        raise BadRequest(str(exc)) from None
    queued = await queries.request_replay(app.redis, instance.id, instance.store_id, [str(f["id"]) for f in found])
    answer = {"requestId": request_id(request), "queued": queued, "ids": [f["id"] for f in found], "nextPage": cursor}
    return JSONResponse(answer, status_code=202)


routes = [
    Route("/instances/{instance_id:instance_id}/events", list_events, methods=["GET"]),
    Route("/instances/{instance_id:instance_id}/events/replay", replay_events, methods=["POST"]),
    Route("/instances/{instance_id:instance_id}/events/{event_id}", get_event, methods=["GET"]),
    Route("/instances/{instance_id:instance_id}/events/{event_id}/replay", replay_event, methods=["POST"]),
]
