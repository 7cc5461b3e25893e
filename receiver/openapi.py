"""`GET /openapi.json`: the OpenAPI 3.1 description of every endpoint, maintained by hand.

Written out rather than generated from the handlers, so it says what we promise
(auth schemes, error bodies, status codes) and not what some introspection
guessed. tests/receiver/test_openapi.py checks that every route is described and
that nothing described is missing, and runs schemathesis against a live relay.
Schemas of the bodies are in receiver/openapi_schemas.py.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from receiver.openapi_schemas import SCHEMAS, SECURITY_SCHEMES

JSON = "application/json"
NEXT_PAGE_HEADER = "Elements-Next-Page-Token"
USER: list[dict[str, list[str]]] = [{"userOrganization": []}]
STATUS_TEXT = {
    200: "OK",
    202: "Accepted: stored, processed shortly",
    400: "Malformed or incomplete request; nothing was stored",
    401: "Missing or wrong credentials or signature",
    404: "No such resource, or not yours",
    409: "Changed concurrently, or not in a state that allows this",
    413: "Body larger than 1 MiB",
    415: "Body is not of a type we read",
    502: "Ecwid failed us (providerMessage says how)",
    503: "Redis is unreachable; nothing was stored, try again",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def ok(schema: dict[str, Any], status: int = 200, headers: dict[str, Any] | None = None) -> dict[int, Any]:
    answer: dict[str, Any] = {"description": STATUS_TEXT[status], "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return {status: answer}


def errors(*statuses: int) -> dict[int, Any]:
    return {s: {"description": STATUS_TEXT[s], "content": {JSON: {"schema": ref("Error")}}} for s in statuses}


def operation(
    summary: str,
    responses: dict[int, Any],
    *,
    security: list[dict[str, list[str]]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    tag: str,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {str(k): v for k, v in responses.items()}}
    op["security"] = security if security is not None else []
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


def path_param(name: str, description: str, schema: dict[str, Any], example: Any) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema,
            "example": example}  # fmt: skip


def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}  # fmt: skip


INSTANCE_ID = path_param("instance_id", "Instance id.", {"type": "string", "pattern": "^[0-9]{1,18}$"}, "1")
EVENT_ID = path_param(
    "event_id", "Notification id (Elements-Webhook-Id) or Ecwid's eventId.", {"type": "string"}, "evt-1"
)
STATUS = query("status", "Comma-separated statuses: RECEIVED, DISPATCHED, PAUSED, NOTIFIED, FAILED, SKIPPED.")
FROM, TO = query("from", "Earliest time, ISO 8601 or unix seconds."), query("to", "Latest time, likewise.")
NEXT_PAGE = query("nextPage", "The Elements-Next-Page-Token of the previous page.")
EVENT_FILTERS = [STATUS, FROM, TO, NEXT_PAGE]  # what selects event log entries, to list or to replay
INSTANCE_ERRORS = errors(400, 401, 404, 409, 413, 415, 503)
ECWID_EVENT_BODY = {JSON: {"schema": ref("EcwidWebhook")}, "application/x-www-form-urlencoded": {
    "schema": ref("IonPost")}}  # fmt: skip
EVENT_HEADERS = [
    {"name": "Element-Instances", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Comma-separated instance ids: deliver only to these of the store's instances."},
]  # fmt: skip
INGEST_SECURITY: list[dict[str, list[str]]] = [{"ecwidSignature": []}, {"ionSecret": []}]


def _ingest(summary: str, with_results: bool) -> dict[str, Any]:
    responses = {**ok(ref("IngestAnswer")), **errors(400, 401, 413, 415, 503)}
    parameters = [*EVENT_HEADERS, query("eventtype", "Event type, for webhooks that leave it out of the body.")]
    if with_results:
        # 200 is also the answer to results for an instance whose events are off (nothing stored).
        responses.update(ok({"anyOf": [ref("IngestAnswer"), ref("PollResultsAnswer")]}))
        responses.update(ok(ref("PollResultsAnswer"), 202))
        parameters = [INSTANCE_ID, *parameters, query("objectType", "With Element auth: the polled object type.")]
    security = INGEST_SECURITY + ([{"elementToken": []}] if with_results else [])
    return operation(summary, responses, security=security, parameters=parameters, body=ECWID_EVENT_BODY,
                     tag="ingest")  # fmt: skip


def _build() -> dict[str, Any]:
    ingest = _ingest("Receive an Ecwid webhook (JSON) or a legacy ION post (form); 200 once durably stored.", False)
    routed = _ingest(
        "The same, only for this instance; or, with `Authorization: Element <token>` and `objectType`, "
        "polling results from an outside scheduler (202).",
        True,
    )
    instance = ok(ref("Instance"))
    instance_list = ok({"type": "array", "items": ref("Instance")})
    events_page = ok(
        {"type": "array", "items": ref("EventRecord")},
        headers={NEXT_PAGE_HEADER: {"description": "Cursor of the next page, when there is one.",
                                    "schema": {"type": "string"}}},
    )  # fmt: skip
    instance_body = {JSON: {"schema": ref("InstanceRequest")}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ecwid-relay",
            "version": "0.1.0",
            "description": "Receives Ecwid store events and forwards each one, verified and deduplicated, to "
            "the apps that subscribed. Every error is JSON `{requestId, message}`.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [{"name": n} for n in ("ingest", "instances", "events", "operations")],
        "paths": {
            "/health": {"get": operation("Liveness: the process serves HTTP.", ok(ref("Status")), tag="operations")},
            "/ready": {
                "get": operation("Readiness: Redis answers.", {**ok(ref("Status")), **errors(503)}, tag="operations")
            },  # fmt: skip
            "/metrics": {
                "get": operation(
                    "Prometheus metrics of this receiver and the queue depths.",
                    {
                        200: {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        **errors(503),
                    },
                    tag="operations",
                )
            },  # fmt: skip
            "/openapi.json": {"get": operation("This document.", ok({"type": "object"}), tag="operations")},
            "/events/ecwid": {"post": ingest, "put": ingest},
            "/events/ecwid/{instance_id}": {"post": routed, "put": routed},
            "/elements/{element}/oauth/url": {
                "get": operation(
                    "The Ecwid authorize URL to send a merchant to.",
                    {**ok(ref("OAuthUrl")), **errors(400, 401, 404)},
                    security=USER,
                    parameters=[
                        path_param("element", "Always `ecwid`.", {"type": "string"}, "ecwid"),
                        *[
                            query(n, d)
                            for n, d in (
                                ("apiKey", "Ecwid app client id (required)."),
                                ("apiSecret", "Ecwid app client secret (required)."),
                                ("callbackUrl", "OAuth redirect URI (required)."),
                                ("scope", "Space-separated scopes."),
                                ("state", "Opaque state."),
                            )
                        ],
                    ],
                    tag="instances",
                )  # fmt: skip
            },
            "/instances": {
                "get": operation(
                    "Your instances.", {**instance_list, **errors(401, 503)}, security=USER, tag="instances"
                ),
                "post": operation(
                    "Create an instance (legacy keys, or OAuth2 with providerData.code).",
                    {**instance, **errors(400, 401, 404, 409, 413, 415, 502, 503)},
                    security=USER,
                    body=instance_body,
                    tag="instances",
                ),
            },  # fmt: skip
            "/instances/polling-disabled": {
                "get": operation(
                    "Your instances whose polling stopped after failures.",
                    {**instance_list, **errors(401, 503)},
                    security=USER,
                    tag="instances",
                ),
            },  # fmt: skip
            "/instances/{instance_id}": {
                "parameters": [INSTANCE_ID],
                "get": operation(
                    "One instance.", {**instance, **errors(401, 404, 503)}, security=USER, tag="instances"
                ),
                "put": operation(
                    "Replace name, tags and configuration.",
                    {**instance, **INSTANCE_ERRORS},
                    security=USER,
                    body=instance_body,
                    tag="instances",
                ),
                "patch": operation(
                    "Change only what the body names.",
                    {**instance, **INSTANCE_ERRORS},
                    security=USER,
                    body=instance_body,
                    tag="instances",
                ),
                "delete": operation(
                    "Delete the instance.",
                    {**ok(ref("Deleted")), **errors(401, 404, 409, 503)},
                    security=USER,
                    tag="instances",
                ),
            },  # fmt: skip
            "/instances/{instance_id}/events": {
                "parameters": [INSTANCE_ID],
                "get": operation(
                    "The instance's event log, newest first.",
                    {**events_page, **errors(400, 401, 404, 503)},
                    security=USER,
                    parameters=[
                        *EVENT_FILTERS,
                        query("pageSize", "1 to 200 (default 50).", {"type": "integer"}),
                    ],
                    tag="events",
                ),
            },  # fmt: skip
            "/instances/{instance_id}/events/replay": {
                "parameters": [INSTANCE_ID],
                "post": operation(
                    "Send again what matches (default status FAILED).",
                    {**ok(ref("ReplayAnswer"), 202), **errors(400, 401, 404, 503)},
                    security=USER,
                    parameters=[
                        *EVENT_FILTERS,
                        query("limit", "1 to 1000 (default 100).", {"type": "integer"}),
                    ],
                    tag="events",
                ),
            },  # fmt: skip
            "/instances/{instance_id}/events/{event_id}": {
                "parameters": [INSTANCE_ID, EVENT_ID],
                "get": operation(
                    "One notification, every attempt.",
                    {**ok(ref("EventRecord")), **errors(401, 404, 503)},
                    security=USER,
                    tag="events",
                ),
            },  # fmt: skip
            "/instances/{instance_id}/events/{event_id}/replay": {
                "parameters": [INSTANCE_ID, EVENT_ID],
                "post": operation(
                    "Send one finished notification again, same Elements-Webhook-Id.",
                    {**ok(ref("ReplayAnswer"), 202), **errors(401, 404, 409, 503)},
                    security=USER,
                    tag="events",
                ),
            },  # fmt: skip
        },
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


SPEC: dict[str, Any] = _build()


async def document(request: Request) -> JSONResponse:
    return JSONResponse(SPEC)
