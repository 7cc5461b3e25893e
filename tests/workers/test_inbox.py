"""The inbox wire format: what a queued event costs in Redis, and that it reads back intact."""

from __future__ import annotations

import orjson

from workers.inbox import InboxItem

BODY = '{"eventId":"e-1","eventCreated":1700000000,"storeId":1003,"entityId":42,"eventType":"order.updated","data":{"orderId":"XJ12H","note":null}}'  # noqa: E501


def item(kind: str, data: dict[str, object] | None, raw: str = BODY) -> InboxItem:
    return InboxItem(
        kind=kind,  # type: ignore[arg-type]
        store_id=1003, event_id="e-1", event_created=1700000000, event_type="order.updated", entity_id=42,
        data=data, instances=(7, 9), received=1.5, raw=raw,
    )  # fmt: skip


def test_a_webhook_holds_its_body_once_and_reads_back_whole() -> None:
    webhook = item("webhook", {"orderId": "XJ12H", "note": None})
    wire = webhook.dumps()
    assert "data" not in orjson.loads(wire)
    assert wire.count(b"XJ12H") == 1
    assert InboxItem.loads(wire) == webhook


def test_a_webhook_without_data_reads_back_none() -> None:
    raw = '{"eventId":"e-1","eventCreated":1700000000,"storeId":1003,"eventType":"order.updated","data":[1]}'
    assert InboxItem.loads(item("webhook", None, raw).dumps()).data is None


def test_other_kinds_and_older_items_keep_their_data() -> None:
    ion = item("ion", None, '{"owner_id":"1003"}')
    assert orjson.loads(ion.dumps())["data"] is None
    assert InboxItem.loads(ion.dumps()) == ion
    older = orjson.loads(item("webhook", {"orderId": "XJ12H"}).dumps()) | {"data": {"orderId": "from-the-item"}}
    assert InboxItem.loads(orjson.dumps(older)).data == {"orderId": "from-the-item"}
