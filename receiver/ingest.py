"""POST /events/ecwid: verify, route, deduplicate and durably queue an Ecwid event.

The answer is 200 only once the event is in Redis (AOF, fsync always), 401 when
it cannot be authenticated, 400/413 for malformed input, 503 when Redis is
unreachable. Ecwid counts only 200/201/202/204/209 as delivered, so we never
answer another 2xx, and never redirect.

Who receives a verified event: the store's instances with events enabled that
trust the secret which verified it. An OAuth2 instance trusts its own
`oauth.api.secret`; an instance without one trusts RELAY_ECWID_CLIENT_SECRETS.
So an event signed by app A never reaches an instance connected through app B.
`/events/ecwid/{instanceId}` and the `Element-Instances` header narrow the set.

`/events/ecwid/{instanceId}?objectType=...` with `Authorization: Element <token>`
is something else: polling results from an outside scheduler (receiver/poll_results.py).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import access_log, bodies, convertors, metrics, poll_results  # noqa: F401  (convertors: {instance_id:instance_id})
from receiver.ecwid_requests import IonPost, WebhookEvent, parse_ion, parse_webhook
from receiver.errors import BadRequest, Unauthorized, Unavailable, request_id
from receiver.headers import header
from receiver.ingest_store import StoreRoute, Subscriber
from receiver.services import Services, services
from receiver.signature_keys import SignatureKeys
from workers.inbox import InboxItem
from workers.instances import Instance

Target = TypeVar("Target", Instance, Subscriber)

SIGNATURE_HEADER = b"x-ecwid-webhook-signature"
# One per process: each client secret's HMAC state is made once (receiver/signature_keys.py).
SIGNATURES = SignatureKeys()
ROUTING_ATTEMPTS = 5
FORM = "application/x-www-form-urlencoded"
NO_QUERY: dict[str, str] = {}


async def ecwid_events(request: Request) -> JSONResponse:
    if "instance_id" in request.path_params and poll_results.is_poll_results(request):
        return await poll_results.receive(request)
    app = services(request)
    body = await bodies.read(request)
    received = time.time()
    if bodies.media_type(request) == FORM:
        return await _accept_ion(request, app, parse_ion(body, received), received)
    # Parsing the query string costs more than the rest of the routing; Ecwid seldom sends one.
    event = parse_webhook(body, request.query_params if request.scope["query_string"] else NO_QUERY)
    access_log.bind(request.scope, event_id=event.event_id, store_id=event.store_id)
    return await _accept_webhook(request, app, event, body, received)


async def _accept_webhook(
    request: Request, app: Services, event: WebhookEvent, body: bytes, received: float
) -> JSONResponse:
    """Route with the store's cached instances and queue in one round trip; route again
    (at most ROUTING_ATTEMPTS times) when Redis says the instances changed meanwhile."""
    signature = header(request, SIGNATURE_HEADER)
    if not signature:
        raise Unauthorized("missing X-Ecwid-Webhook-Signature")
    global_secrets = [secret.value for secret in app.settings.ecwid_client_secrets]
    routed = app.inbox.route(event.store_id) or await app.inbox.load(event.store_id)
    for _ in range(ROUTING_ATTEMPTS):
        try:
            targets = narrow(request, webhook_targets(signature, routed.instances, global_secrets, event))
        except Unauthorized:
            if not routed.cached:
                raise
            routed = await app.inbox.load(event.store_id)  # a secret may have been added meanwhile
            continue
        item = InboxItem(
            kind="webhook", store_id=event.store_id, event_id=event.event_id, event_created=event.event_created,
            event_type=event.event_type, entity_id=event.entity_id, data=event.data,
            instances=tuple(i.id for i in targets), received=received, raw=body.decode("utf-8"),
        )  # fmt: skip
        route = _route(request, item)
        outcome = await app.inbox.accept_routed(event.store_id, routed, item if targets else None, route)
        if isinstance(outcome, StoreRoute):
            routed = outcome
            continue
        return _answer(request, item, "duplicate" if outcome == "duplicate" else "accepted")
    raise Unavailable("the store's instances kept changing while this event was routed; try again")


async def _accept_ion(request: Request, app: Services, post: IonPost, received: float) -> JSONResponse:
    access_log.bind(request.scope, event_id=post.event_id, store_id=post.store_id, kind="ion")
    targets = narrow(request, await _ion_targets(request, app, post))
    item = InboxItem(
        kind="ion", store_id=post.store_id, event_id=post.event_id, event_created=post.event_created,
        event_type=post.event_type, entity_id=post.order_id, data=None,
        instances=tuple(i.id for i in targets), received=received, raw=_form_json(post),
    )  # fmt: skip
    if not item.instances:
        return _answer(request, item, "accepted")
    queued = await app.inbox.accept(item, _route(request, item))
    return _answer(request, item, "accepted" if queued else "duplicate")


def _route(request: Request, item: InboxItem) -> str:
    """The dedup scope: the target list when routed explicitly, else the event alone."""
    return ",".join(str(i) for i in sorted(item.instances)) if explicitly_routed(request) else ""


def _answer(request: Request, item: InboxItem, outcome: str) -> JSONResponse:
    """The 200 answer. What happened goes on the request's access line (receiver/middleware.py)."""
    answer = {"requestId": request_id(request), "eventId": item.event_id, "instances": list(item.instances)}
    if not item.instances:
        outcome = "no_subscriber"
        message = "verified; no subscribed instance, not forwarded"
    else:
        metrics.ingested(item.kind, outcome == "accepted")
        message = "accepted" if outcome == "accepted" else "duplicate eventId; already accepted, not forwarded again"
    access_log.note(request.scope, outcome=outcome, event_type=item.event_type, targets=len(item.instances))
    return Answer({**answer, "message": message})


class Answer(JSONResponse):
    """The same compact JSON as Starlette's, rendered by orjson (ingest's hot path)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def webhook_targets(
    signature: str, instances: Sequence[Subscriber], global_secrets: list[str], event: WebhookEvent
) -> list[Subscriber]:
    """The instances that receive a webhook: subscribed, and trusting a secret that verified it.

    Raises Unauthorized when no candidate secret verifies the signature.
    """
    candidates = [i.oauth_secret for i in instances if i.oauth_secret] + global_secrets
    verified = SIGNATURES.verified(signature, candidates, str(event.event_created), event.event_id)
    if not verified:
        raise Unauthorized("X-Ecwid-Webhook-Signature does not match any client secret for this store")
    by_global = any(secret in verified for secret in global_secrets)
    return [
        i for i in instances
        if i.subscribed and ((i.oauth_secret in verified) if i.oauth_secret else by_global)
    ]  # fmt: skip


async def _ion_targets(request: Request, app: Services, post: IonPost) -> list[Instance]:
    secret = request.query_params.get("secret", "")
    if not secret:
        raise Unauthorized("legacy ION posts must carry ?secret= (the instance's ecwid.ion.secret)")
    instances = await app.instances.for_store(post.store_id)
    accepting = [
        i for i in instances
        if i.ion_secret and hmac.compare_digest(i.ion_secret.encode(), secret.encode())
    ]  # fmt: skip
    if not accepting:
        raise Unauthorized("no instance of this store accepts ION posts with this secret")
    return [i for i in accepting if i.subscribed]


def explicitly_routed(request: Request) -> bool:
    """True when the path or the Element-Instances header names the target instances."""
    return "instance_id" in request.path_params or header(request, b"element-instances") is not None


def narrow(request: Request, targets: Sequence[Target]) -> list[Target]:
    """Apply explicit routing: the path's instance id and the Element-Instances header."""
    if not explicitly_routed(request):
        return list(targets)
    wanted: set[int] | None = None
    if "instance_id" in request.path_params:
        wanted = {int(request.path_params["instance_id"])}
    listed = header(request, b"element-instances")
    if listed is not None:
        try:
            named = {int(part) for part in listed.split(",") if part.strip()}
        except ValueError:
            raise BadRequest("Element-Instances must be a comma-separated list of instance ids") from None
        wanted = named if wanted is None else wanted & named
    assert wanted is not None  # explicitly routed: the path or the header named instances
    return [i for i in targets if i.id in wanted]


def _form_json(post: IonPost) -> str:
    return orjson.dumps(post.fields).decode()


PATH = "/events/ecwid"
METHODS = ("POST", "PUT")
routes = [
    Route(PATH, ecwid_events, methods=list(METHODS)),
    Route(PATH + "/{instance_id:instance_id}", ecwid_events, methods=list(METHODS)),
]
