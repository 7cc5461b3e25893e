"""Scenario 6: Hypothesis-generated requests against /events/ecwid and every /instances endpoint.

For every case: never a 5xx; an error is JSON {requestId, message}; a rejected request
changes nothing in Redis (DEBUG DIGEST before and after); and, at the end, the receiver's
log holds no crash and no traceback. The cases run against a real `ecwid-relay serve`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.abuse.conftest import assert_clean_logs
from tests.conftest import AUTH, CLIENT_SECRET, OTHER_AUTH
from tests.support.ecwid import create_custom, post_webhook, webhook
from tests.support.processes import Receiver, Worker
from workers.settings import Settings
from workers.signatures import ecwid_signature

# Cases actually sent; Hypothesis generates a few more, as httpx refuses to send some.
INGEST_CASES = 2500
INSTANCES_CASES = 2600


def fuzz(cases: int) -> settings:
    return settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)
anything = st.text(max_size=60)
json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | anything
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(anything, inner, max_size=4), max_leaves=12
)
ids = st.one_of(st.integers(-5, 10**20).map(str), anything, st.sampled_from(["1", "2", "3", "0", "-1", "1e3", "²"]))


class Fuzzer:
    def __init__(self, receiver: Receiver, r: redis.Redis) -> None:
        self.client = receiver.client()
        self.redis = r
        self.digest = self._digest()
        self.cases = 0
        self.statuses: dict[int, int] = {}

    def _digest(self) -> bytes:
        return bytes(self.redis.execute_command("DEBUG", "DIGEST"))

    def check(self, method: str, path: str, **request: Any) -> None:
        try:
            response = self.client.request(method, path, **request)
        except (httpx.LocalProtocolError, httpx.InvalidURL):
            return  # httpx would not send it (say, a header value with a trailing space): not a case
        self.cases += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        after = self._digest()
        assert response.status_code < 500, (method, path, request, response.status_code, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) in ({"requestId", "message"}, {"requestId", "message", "providerMessage"}), body
            assert isinstance(body["message"], str) and body["message"], body
            assert after == self.digest, f"a rejected request changed Redis: {method} {path} {request}"
        self.digest = after


@pytest.fixture
def fuzz_stack(abuse_settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> Any:
    receiver = Receiver(abuse_settings, tmp_path / "receiver.log")
    with receiver.client() as api:
        mine = create_custom(api, "https://example.com/a")
        theirs = create_custom(api, "https://example.com/b", store_id=2000, auth=OTHER_AUTH)
        # A few events in the log (a worker dispatches them, then stops: the fuzzing sees a still Redis).
        for n in range(3):
            assert post_webhook(api, webhook(f"fuzz-seed-{n}")).status_code == 200
    worker = Worker(abuse_settings, tmp_path / "worker.log", "fuzz-seed-w")
    while redis_client.zcard(f"relay:instance:{mine['id']}:deliveries") < 3:
        pass
    worker.terminate()
    # RQ's short-lived keys (the stopped worker's registration, locks) would expire mid-run and
    # change the digest; nothing of the relay's own expires within minutes.
    for key in redis_client.keys("*"):
        if 0 <= redis_client.ttl(key) < 3600:
            redis_client.delete(key)
    fuzzer = Fuzzer(receiver, redis_client)
    yield fuzzer, mine, theirs
    fuzzer.client.close()
    receiver.terminate()
    assert_clean_logs(receiver.logs())
    print(f"\n[faults] fuzzing: cases={fuzzer.cases} statuses={dict(sorted(fuzzer.statuses.items()))}")


def auth_headers(instance: dict[str, Any]) -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(
        st.just({"Authorization": AUTH}),
        st.just({"Authorization": OTHER_AUTH}),
        st.just({}),
        printable.map(lambda v: {"Authorization": v}),
        st.just({"Authorization": f"Element {instance['token']}"}),
        printable.map(lambda v: {"Authorization": f"User {v}, Organization {v}"}),
    )


content_types = st.sampled_from(
    ["application/json", "application/json; charset=UTF-8", "application/x-www-form-urlencoded",
     "text/plain", "multipart/form-data; boundary=x", "", "application/vnd.api+json"]
)  # fmt: skip
queries = st.dictionaries(
    st.sampled_from(["status", "from", "to", "pageSize", "nextPage", "limit", "objectType", "secret",
                     "eventtype", "eventType", "apiKey", "apiSecret", "callbackUrl", "state", "scope"]) | anything,
    anything, max_size=4,
)  # fmt: skip


def webhook_like() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "eventId": st.one_of(anything, st.integers(), st.none()),
            "eventCreated": st.one_of(st.integers(-(2**70), 2**70), anything, st.floats(), st.none()),
            "storeId": st.one_of(st.sampled_from([1003, 2000, "1003"]), st.integers(), anything, st.none()),
            "entityId": json_value,
            "eventType": st.one_of(
                st.sampled_from(
                    ["order.created", "product.updated", "unfinished_order.deleted", "application.uninstalled"]
                ),
                anything,
            ),  # fmt: skip
            "data": json_value,
        },
    )


def test_fuzz_ingest(fuzz_stack: Any) -> None:
    fuzzer, mine, theirs = fuzz_stack

    @fuzz(INGEST_CASES + 500)
    @given(
        path=st.sampled_from(["/events/ecwid", f"/events/ecwid/{mine['id']}", f"/events/ecwid/{theirs['id']}"])
        | ids.map(lambda i: "/events/ecwid/" + quote(i, safe="")),
        method=st.sampled_from(["POST", "POST", "PUT"]),
        body=st.one_of(
            webhook_like().map(lambda d: json.dumps(d).encode()),
            st.binary(max_size=300),
            json_value.map(lambda v: json.dumps(v).encode()),
        ),  # fmt: skip
        content_type=content_types,
        signature=st.one_of(st.none(), printable, st.just("sign")),
        headers=auth_headers(mine),
        element_instances=st.one_of(st.none(), printable),
        query=queries,
    )
    def case(path: str, method: str, body: bytes, content_type: str, signature: str | None,
             headers: dict[str, str], element_instances: str | None, query: dict[str, str]) -> None:  # fmt: skip
        sent = dict(headers)
        if content_type:
            sent["Content-Type"] = content_type
        if signature == "sign":
            # A valid signature over whatever fields the body carries, so the cases get past the check.
            try:
                doc = json.loads(body)
                signature = ecwid_signature(CLIENT_SECRET, str(doc.get("eventCreated")), str(doc.get("eventId")))
            except (ValueError, AttributeError):
                signature = "x"
        if signature is not None:
            sent["X-Ecwid-Webhook-Signature"] = signature
        if element_instances is not None:
            sent["Element-Instances"] = element_instances
        fuzzer.check(method, path, content=body, headers=sent, params=query)

    case()
    assert fuzzer.cases >= INGEST_CASES


def test_fuzz_instances_api(fuzz_stack: Any) -> None:
    fuzzer, mine, theirs = fuzz_stack
    real = st.sampled_from([str(mine["id"]), str(theirs["id"])])
    event = st.one_of(st.just("fuzz-seed-1"), anything, st.uuids().map(str))
    paths = st.one_of(
        st.tuples(st.sampled_from(["GET", "POST"]), st.just("/instances")),
        st.tuples(st.just("GET"), st.just("/instances/polling-disabled")),
        st.tuples(st.just("GET"), st.sampled_from(["/elements/ecwid/oauth/url", "/elements/shopify/oauth/url"])),
        st.tuples(st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "POST"]), (real | ids).map(lambda i: f"/instances/{quote(i, safe='')}")),  # noqa: E501
        st.tuples(st.just("GET"), (real | ids).map(lambda i: f"/instances/{quote(i, safe='')}/events")),
        st.tuples(st.just("POST"), (real | ids).map(lambda i: f"/instances/{quote(i, safe='')}/events/replay")),
        st.tuples(st.sampled_from(["GET", "DELETE"]), st.tuples(real | ids, event).map(
            lambda p: f"/instances/{quote(p[0], safe='')}/events/{quote(p[1], safe='')}")),
        st.tuples(st.just("POST"), st.tuples(real | ids, event).map(
            lambda p: f"/instances/{quote(p[0], safe='')}/events/{quote(p[1], safe='')}/replay")),
    )  # fmt: skip
    configuration = st.dictionaries(
        st.sampled_from(["ecwid.store.id", "ecwid.order.key", "ecwid.product.key", "event.notification.enabled",
                         "event.notification.callback.url", "event.notification.signature.key", "event.vendor.type",
                         "event.poller.refresh_interval", "event.objects", "filter.response.nulls",
                         "oauth.api.key", "oauth.api.secret", "oauth.callback.url", "ecwid.api.token",
                         "event.notification.signature.scheme", "event.notification.standardwebhooks.secret",
                         "ecwid.ion.enabled", "ecwid.ion.secret"]) | anything,
        json_value, max_size=6,
    )  # fmt: skip
    instance_body = st.fixed_dictionaries(
        {},
        optional={
            "element": st.one_of(st.just({"key": "ecwid"}), json_value),
            "name": json_value,
            "tags": json_value,
            "disabled": json_value,
            "configuration": st.one_of(configuration, json_value),
            # Never a real code: the fake OAuth server is not running here, and Ecwid must not be asked.
            "providerData": st.one_of(json_value, st.just({"code": "x"})),
        },
    )

    @fuzz(INSTANCES_CASES + 500)
    @given(
        route=paths,
        headers=auth_headers(mine),
        content_type=content_types,
        body=st.one_of(st.none(), instance_body.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200)),
        query=queries,
    )
    def case(route: tuple[str, str], headers: dict[str, str], content_type: str, body: bytes | None,
             query: dict[str, str]) -> None:  # fmt: skip
        method, path = route
        sent = dict(headers)
        if content_type:
            sent["Content-Type"] = content_type
        if method == "DELETE" and headers.get("Authorization") in (AUTH, OTHER_AUTH) and path.count("/") == 2:
            return  # deleting a real instance is not abuse; keep the others' targets alive
        fuzzer.check(method, path, content=body, headers=sent, params=query)

    case()
    assert fuzzer.cases >= INSTANCES_CASES
