"""The Cloud Elements-compatible instances API: /instances and /elements/ecwid/oauth/url."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import auth, bodies, convertors, instance_requests, oauth  # noqa: F401
from receiver.errors import BadRequest, NotFound
from receiver.services import Services, services
from workers.envelope import iso_date, iso_date_ms
from workers.instances import Instance


async def oauth_url(request: Request) -> JSONResponse:
    app = services(request)
    auth.authenticate(request, app.settings)
    element = request.path_params["element"]
    if element != "ecwid":
        raise NotFound(f"element {element[:60]!r} not found; this relay serves 'ecwid'")
    query = request.query_params
    missing = [name for name in ("apiKey", "apiSecret", "callbackUrl") if not query.get(name)]
    if missing:
        raise BadRequest("missing query parameters: " + ", ".join(missing))
    url = oauth.authorize_url(
        app.settings.ecwid_oauth_url,
        client_id=query["apiKey"],
        redirect_uri=query["callbackUrl"],
        scope=query.get("scope") or oauth.DEFAULT_SCOPE,
        state=query.get("state"),
    )
    return JSONResponse({"element": "ecwid", "oauthUrl": url})


async def create_instance(request: Request) -> JSONResponse:
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    wanted = instance_requests.parse(await bodies.json_object(request), creating=True)
    config = instance_requests.merge({}, wanted.configuration or {}, replace=True)
    kind: str = "oauth2" if wanted.code else "custom"
    instance_requests.check_complete(config, "oauth2" if wanted.code else "custom")
    provider: dict[str, str] = {}
    if wanted.code:
        grant = await oauth.exchange_code(
            app.http,
            app.settings.ecwid_oauth_url,
            client_id=config["oauth.api.key"],
            client_secret=config["oauth.api.secret"],
            code=wanted.code,
            redirect_uri=config["oauth.callback.url"],
        )
        config["ecwid.store.id"] = str(grant.store_id)
        provider = {"access_token": grant.access_token, "scope": grant.scope}
    store_id = int(config["ecwid.store.id"])
    draft = Instance(
        id=0,
        owner=owner,
        name=wanted.name or f"Ecwid store {store_id}",
        token="",
        auth="oauth2" if kind == "oauth2" else "custom",
        store_id=store_id,
        configuration=config,
        tags=wanted.tags or (),
        disabled=bool(wanted.disabled),
        provider=provider,
    )
    instance = await app.instances.create(draft)
    return JSONResponse((await _views(app, [instance]))[0])


async def _views(app: Services, instances: list[Instance]) -> list[dict[str, Any]]:
    """The API view of each instance: its delivery state, and the poller's for polling ones."""
    states = await app.instances.polling_states(instances)
    deliveries = await app.instances.delivery_states(instances)
    views = []
    for instance in instances:
        view = instance.public()
        view["delivery"] = delivery_view(instance, deliveries.get(instance.id, {}))
        if instance.vendor == "polling":
            view["polling"] = polling_view(instance, states.get(instance.id, {}))
        views.append(view)
    return views


def delivery_view(instance: Instance, state: dict[str, str]) -> dict[str, Any]:
    """Whether deliveries flow, are paused (since when, why) or drain a buffer (workers/pausing.py)."""
    paused = state.get("state") == "paused"
    due = state.get("due")
    return {
        "state": state.get("state") or "active",
        "paused": paused,
        "since": iso_date_ms(int(state["since"])) if state.get("since") else None,
        "reason": state.get("reason") if paused else None,
        "resumesByHand": paused and bool(state.get("manual")),
        "nextProbeDate": iso_date_ms(int(due)) if paused and due and not state.get("manual") else None,
        "consecutiveFailures": int(state.get("failures", "0")),
        "buffered": int(state.get("buffered", "0")),
        "concurrency": instance.concurrency,
        "pauseThreshold": instance.pause_threshold,
    }


def polling_view(instance: Instance, state: dict[str, str]) -> dict[str, Any]:
    """What the poller is doing for an instance: whether it runs, when it last ran, why it stopped."""

    def when(name: str) -> str | None:
        value = state.get(name)
        return iso_date(int(value)) if value else None

    return {
        "active": instance.polls and "disabled_reason" not in state,
        "refreshIntervalMinutes": instance.poll_interval,
        "objects": list(instance.poll_objects),
        "lastRoundStarted": when("last_started"),
        "lastRoundFinished": when("last_finished"),
        "lastResult": state.get("last_result"),
        "lastError": state.get("last_error"),
        "consecutiveFailures": int(state.get("failures", "0")),
        "disabledReason": state.get("disabled_reason"),
        "disabledDate": when("disabled_at"),
    }


async def list_instances(request: Request) -> JSONResponse:
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    return JSONResponse(await _views(app, await app.instances.list(owner)))


async def polling_disabled(request: Request) -> JSONResponse:
    """GET /instances/polling-disabled: instances whose poller stopped after failures."""
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    return JSONResponse(await _views(app, await app.instances.polling_disabled(owner)))


async def get_instance(request: Request) -> JSONResponse:
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    instance = await app.instances.owned(request.path_params["instance_id"], owner)
    return JSONResponse((await _views(app, [instance]))[0])


async def update_instance(request: Request) -> JSONResponse:
    """PUT replaces name, tags and configuration; PATCH changes only what it names."""
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    replace = request.method == "PUT"
    wanted = instance_requests.parse(await bodies.json_object(request), creating=False)
    if wanted.code is not None:
        raise BadRequest("providerData.code cannot be changed; create a new instance to re-authenticate")

    def edit(current: Instance) -> Instance:
        config = current.configuration
        if wanted.configuration is not None or replace:
            config = instance_requests.merge(config, wanted.configuration or {}, replace=replace)
        store_id = current.store_id
        if current.auth == "oauth2":
            # The store of an OAuth instance is the one Ecwid granted, not a setting.
            granted = str(current.store_id)
            if config.get("ecwid.store.id", granted) != granted:
                raise BadRequest("ecwid.store.id of an OAuth2 instance comes from Ecwid and cannot change")
            config["ecwid.store.id"] = granted
        instance_requests.check_complete(config, current.auth)
        if current.auth == "custom":
            store_id = int(config["ecwid.store.id"])
        return current.evolve(
            name=wanted.name if wanted.name is not None else current.name,
            tags=wanted.tags if wanted.tags is not None else (() if replace else current.tags),
            disabled=wanted.disabled if wanted.disabled is not None else current.disabled,
            configuration=config,
            store_id=store_id,
        )

    # Enabling events is how a user resumes polling that stopped after failures (as Cloud Elements).
    resume = (wanted.configuration or {}).get("event.notification.enabled") == "true"
    instance = await app.instances.change(request.path_params["instance_id"], owner, edit, resume=resume)
    if wanted.paused is True:
        await app.instances.pause(instance.id, "paused by hand (PATCH delivery.paused)")
    elif wanted.paused is False:
        await app.instances.resume(instance.id)
    return JSONResponse((await _views(app, [instance]))[0])


async def delete_instance(request: Request) -> JSONResponse:
    app = services(request)
    owner = auth.authenticate(request, app.settings)
    instance_id = request.path_params["instance_id"]
    await app.instances.delete(instance_id, owner)
    return JSONResponse({"id": instance_id, "deleted": True})


routes = [
    Route("/elements/{element}/oauth/url", oauth_url, methods=["GET"]),
    Route("/instances", create_instance, methods=["POST"]),
    Route("/instances", list_instances, methods=["GET"]),
    Route("/instances/polling-disabled", polling_disabled, methods=["GET"]),
    Route("/instances/{instance_id:instance_id}", get_instance, methods=["GET"]),
    Route("/instances/{instance_id:instance_id}", update_instance, methods=["PUT", "PATCH"]),
    Route("/instances/{instance_id:instance_id}", delete_instance, methods=["DELETE"]),
]
