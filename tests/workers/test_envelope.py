"""The notification body: envelope shape, null filtering, verbatim raw."""

from __future__ import annotations

import json
import uuid

import orjson

from workers.envelope import build, iso_date, iso_date_ms, strip_nulls
from workers.inbox import InboxItem, notification_id
from workers.instances import Instance

RAW = (
    '{"eventId":"e-1","eventCreated":1700000000,"storeId":1003,"entityId":42,"eventType":"order.created",'
    '"data":{"orderId":"XJ12H","old":null,"items":[{"a":null,"b":1},null,2.50]},"extra":null}'
)


def item(raw: str = RAW) -> InboxItem:
    doc = json.loads(raw)
    return InboxItem(
        kind="webhook",
        store_id=1003,
        event_id="e-1",
        event_created=1700000000,
        event_type="order.created",
        entity_id=42,
        data=doc["data"],
        instances=(7,),
        received=1700000001.0,
        raw=raw,
    )


def instance(**config: str) -> Instance:
    return Instance(
        id=7,
        owner="u1",
        name="Shop",
        token="t",
        auth="custom",
        store_id=1003,
        tags=("a", "b"),
        configuration={"event.notification.enabled": "true", **config},
    )


def test_strip_nulls_recurses_into_objects_and_arrays() -> None:
    value = {"a": None, "b": {"c": None, "d": [{"e": None, "f": 1}, None, [{"g": None}]]}, "h": 0, "i": ""}
    assert strip_nulls(value) == {"b": {"d": [{"f": 1}, None, [{}]]}, "h": 0, "i": ""}


def test_envelope_shape_with_nulls_filtered() -> None:
    body = build(item(), instance())
    message = orjson.loads(body)["message"]
    notification_id = item().notification_id(7)
    assert message == {
        "eventId": notification_id,
        "elementKey": "ecwid",
        "instanceId": 7,
        "instance_id": 7,
        "instanceName": "Shop",
        "instanceTags": ["a", "b"],
        "userId": "u1",
        "events": [
            {
                "elementKey": "ecwid",
                "hubKey": "ecommerce",
                "objectType": "orders",
                "objectId": "XJ12H",
                "eventType": "CREATED",
                "date": "2023-11-14T22:13:20Z",
            }
        ],
        "raw": {
            "eventId": "e-1",
            "eventCreated": 1700000000,
            "storeId": 1003,
            "entityId": 42,
            "eventType": "order.created",
            "data": {"orderId": "XJ12H", "items": [{"b": 1}, None, 2.5]},
        },
    }


def test_raw_is_verbatim_when_nulls_are_kept() -> None:
    body = build(item(), instance(**{"filter.response.nulls": "false"}))
    assert body.endswith(b',"raw":' + RAW.encode() + b"}}")
    parsed = orjson.loads(body)
    assert parsed["message"]["raw"]["extra"] is None
    assert parsed["message"]["raw"]["data"]["items"][2] == 2.50


def test_notification_id_is_stable_per_event_and_instance() -> None:
    assert item().notification_id(7) == item().notification_id(7)
    assert item().notification_id(7) != item().notification_id(8)


def test_notification_id_is_the_uuid5_of_store_event_and_instance() -> None:
    namespace = uuid.UUID("6f1c3b1e-2a6e-4d53-9a8e-0c1e5d7a9b42")
    for store, event, instance_id in [(1003, "e-1", 7), (1, "", 1), (99999999, "ünïcode/ev:t", 123456)]:
        expected = str(uuid.uuid5(namespace, f"{store}:{event}:{instance_id}"))
        assert notification_id(store, event, instance_id) == expected
    assert notification_id(1003, "e-1", 7) == "d1afa58d-d428-5400-a7a5-d83585d574b0"


def test_dates_are_utc_iso_8601_with_a_z() -> None:
    assert iso_date(1_764_224_172) == "2025-11-27T06:16:12Z"
    assert iso_date(0) == "1970-01-01T00:00:00Z"
    assert iso_date_ms(1_764_224_172_345) == "2025-11-27T06:16:12.345Z"
    assert iso_date_ms(1_764_224_172_000) == "2025-11-27T06:16:12.000Z"
    assert iso_date_ms(1_764_224_172_999) == "2025-11-27T06:16:12.999Z"
