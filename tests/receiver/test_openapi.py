"""GET /openapi.json describes every route, and a live relay keeps its promises (schemathesis)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from receiver.app import create_app
from receiver.openapi import SPEC
from tests.conftest import AUTH, CLIENT_SECRET, ORG, ROOT, USER, Receiver, running_receiver, worker_env
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.servers import FakeEcwidOAuth
from workers.redis_server import RedisServer
from workers.settings import Secret, Settings

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_every_route_is_described_and_nothing_else() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1"))
    served = {
        (re.sub(r":[a-z_]+}", "}", route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or set()) & METHODS
    }
    described = {(path, method) for path, item in SPEC["paths"].items() for method in item if method != "parameters"}
    assert served == described
    assert len(served) == 20


def test_spec_is_openapi_3_1_with_auth_schemes_and_error_body() -> None:
    assert SPEC["openapi"] == "3.1.0"
    assert set(SPEC["components"]["securitySchemes"]) == {"userOrganization", "elementToken", "ecwidSignature",
                                                           "ionSecret"}  # fmt: skip
    assert SPEC["components"]["schemas"]["Error"]["required"] == ["requestId", "message"]
    schema = schemathesis.openapi.from_dict(SPEC)  # refuses a document that is not valid OpenAPI
    assert len(list(schema.get_all_operations())) == 20


def test_the_live_document_is_the_spec(api: httpx.Client) -> None:
    response = api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == SPEC


@pytest.fixture(scope="module")
def live_relay(redis_server: RedisServer) -> Iterator[Receiver]:
    """One real uvicorn + Redis for the whole schemathesis run, with instance 1 to find."""
    connection = redis.Redis.from_url(redis_server.url)
    connection.flushall()
    oauth = FakeEcwidOAuth()
    settings_ = Settings(
        redis_url=redis_server.url,
        organization_secret=Secret(ORG),
        user_secrets=(Secret(USER),),
        ecwid_oauth_url=oauth.oauth_url,
        ecwid_client_secrets=(Secret(CLIENT_SECRET),),
    )
    with running_receiver(settings_) as running, running.client() as client:
        # Instance 1 with one FAILED event, evt-1, in its log (the SSRF guard refuses the loopback
        # callback), so that the event log and replay operations have something to answer with.
        assert create_custom(client, "http://127.0.0.1:9/hook")["id"] == 1
        assert post_webhook(client, webhook("evt-1")).json()["message"] == "accepted"
        worker = [sys.executable, "-m", "workers.cli", "worker", "--burst"]
        subprocess.run(worker, env=worker_env(settings_), cwd=ROOT, check=True, capture_output=True, timeout=60)
        [event] = client.get("/instances/1/events", headers={"Authorization": AUTH}).json()
        assert (event["eventId"], event["status"]) == ("evt-1", "FAILED")
        yield running
    oauth.close()
    connection.close()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_live_relay_conforms(live_relay: Receiver) -> None:
    """No 5xx for any generated input; statuses, content types, headers and bodies as described.

    One test over every operation (schemathesis's pytest plugin does not run on pytest 9.2), in three
    passes: the spec's examples (instance 1, event evt-1), random input, and random input aimed at
    instance 1 so that the 200s of the event log, replay and update operations are checked too.
    At most 15 generated requests per operation and pass keep the run bounded."""
    schema = schemathesis.openapi.from_dict(httpx.get(f"{live_relay.url}/openapi.json").json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 20
    # DELETE last: deleting instance 1 would turn every later answer about it into a 404.
    operations.sort(key=lambda operation: operation.method == "delete")
    seen: dict[str, set[int]] = {}

    def check(strategy: st.SearchStrategy[schemathesis.Case], examples: int) -> None:
        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            response = case.call_and_validate(base_url=live_relay.url, headers={"Authorization": AUTH}, checks=CHECKS)
            seen.setdefault(case.operation.label, set()).add(response.status_code)

        conforms()

    for operation in operations:
        for example in operation.get_strategies_from_examples():
            check(example, 3)
        check(operation.as_strategy(), 15)
        if "instance_id" in operation.path:
            check(operation.as_strategy(path_parameters={"instance_id": "1"}), 15)
    # The passes reached the answers that carry bodies worth checking, not only errors.
    assert 200 in seen["GET /instances/{instance_id}/events/{event_id}"]
    assert 200 in seen["GET /instances/{instance_id}/events"]
    assert 202 in seen["POST /instances/{instance_id}/events/{event_id}/replay"]
    assert 200 in seen["PATCH /instances/{instance_id}"]
