"""A fake Ecwid REST API v3: a Starlette app served by real uvicorn on a local port.

It follows the shapes in ecwid.md §5: the list envelope `{total, count, offset,
limit, items}` (at most 100 items a page), `updatedFrom` on orders, products,
customers and carts, `/{entity}/deleted?from_date=`, unfiltered `/categories`,
`/latest-stats`, Bearer-only authentication (a `?token=` query is refused), and
scripted faults: 429 with `Retry-After`, 402, 403, and slow pages.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.servers import free_port

TOKEN = "secret_polling_token_0123456789"
STORE = 1003
UPDATED_FIELD = {"orders": "updateTimestamp", "products": "updateTimestamp", "carts": "updateTimestamp"}


def date(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


@dataclass
class Fault:
    path: str  # matches when the request path ends with this
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    times: int = 1
    delay: float = 0.0  # seconds to wait before answering (status 200 answers normally)
    offset: int | None = None  # only for this page
    action: Callable[[], object] | None = None  # run before answering: change the store mid-listing


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    authorization: str | None
    at: float


class FakeEcwidApi:
    def __init__(self, store_id: int = STORE, tokens: tuple[str, ...] = (TOKEN,)) -> None:
        self.store_id = store_id
        self.tokens = set(tokens)
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            k: {} for k in ("orders", "products", "customers", "carts", "categories")
        }
        self.deleted: dict[str, list[dict[str, Any]]] = {"orders": [], "products": [], "customers": []}
        self.categories_updated = date(1_600_000_000)
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        app = Starlette(routes=[
            Route("/api/v3/{store:int}/latest-stats", self.latest_stats),
            Route("/api/v3/{store:int}/{kind}/deleted", self.deleted_items),
            Route("/api/v3/{store:int}/{kind}", self.items),
        ])  # fmt: skip
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False, lifespan="off",
                                                    timeout_graceful_shutdown=1))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > end:
                raise RuntimeError("fake Ecwid API did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        """What RELAY_ECWID_API_URL points at."""
        return f"http://127.0.0.1:{self.port}/api/v3"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    # -- the store's data, as tests shape it ---------------------------------------------

    def order(self, order_id: str, created: int, updated: int | None = None, **extra: Any) -> dict[str, Any]:
        updated = created if updated is None else updated
        item = {
            "id": order_id,
            "internalId": abs(hash(order_id)) % 10**8,
            "createTimestamp": created,
            "updateTimestamp": updated,
            "createDate": date(created),
            "updateDate": date(updated),
            **extra,
        }
        self.objects["orders"][order_id] = item
        return item

    def product(self, product_id: int, created: int, updated: int | None = None, **extra: Any) -> dict[str, Any]:
        updated = created if updated is None else updated
        item = {"id": product_id, "createTimestamp": created, "updateTimestamp": updated,
                "created": date(created), "updated": date(updated), **extra}  # fmt: skip
        self.objects["products"][str(product_id)] = item
        return item

    def customer(self, customer_id: int, created: int, updated: int | None = None, **extra: Any) -> dict[str, Any]:
        # Customers carry date strings only: the poller must parse Ecwid's date format.
        updated = created if updated is None else updated
        item = {"id": customer_id, "registered": date(created), "updated": date(updated), **extra}
        self.objects["customers"][str(customer_id)] = item
        return item

    def cart(self, cart_id: str, created: int, updated: int | None = None) -> dict[str, Any]:
        updated = created if updated is None else updated
        item = {"cartId": cart_id, "createTimestamp": created, "updateTimestamp": updated}
        self.objects["carts"][cart_id] = item
        return item

    def category(self, category_id: int, name: str, when: int, **extra: Any) -> dict[str, Any]:
        item = {"id": category_id, "name": name, "productCount": 0, **extra}
        self.objects["categories"][str(category_id)] = item
        self.categories_updated = date(when)
        return item

    def delete(self, kind: str, object_id: str | int, when: int) -> None:
        item = self.objects[kind].pop(str(object_id))
        if kind == "categories":
            self.categories_updated = date(when)
            return
        record: dict[str, Any] = {"id": item.get("internalId", item["id"]), "date": date(when)}
        if kind == "orders":
            record["orderId"] = item["id"]
        self.deleted[kind].append(record)

    def requests_to(self, suffix: str) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.path.endswith(suffix)]

    # -- the API -------------------------------------------------------------------------

    def _check(self, request: Request) -> JSONResponse | None:
        params = dict(request.query_params)
        with self.lock:
            self.seen.append(Seen(request.url.path, params, request.headers.get("authorization"), time.monotonic()))
        if request.path_params["store"] != self.store_id:
            return JSONResponse({"errorMessage": "Store not found", "errorCode": "STORE_NOT_FOUND"}, 404)
        bearer = request.headers.get("authorization", "")
        if "token" in params or not bearer.startswith("Bearer ") or bearer[7:] not in self.tokens:
            return JSONResponse({"errorMessage": "Invalid token", "errorCode": "INVALID_API_TOKEN"}, 403)
        return None

    def _fault(self, request: Request) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                offset = request.query_params.get("offset")
                if request.url.path.endswith(fault.path) and (fault.offset is None or str(fault.offset) == offset):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    async def _answer(self, request: Request, items: list[dict[str, Any]]) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        fault = self._fault(request)
        if fault is not None and fault.action is not None:
            fault.action()
            items = self._current(request)
        if fault is not None:
            if fault.delay:
                await _sleep(fault.delay)
            if fault.status != 200:
                return JSONResponse(fault.body, fault.status, headers=fault.headers)
        offset = int(request.query_params.get("offset", "0"))
        limit = min(int(request.query_params.get("limit", "100")), 100)
        page = items[offset : offset + limit]
        return JSONResponse({"total": len(items), "count": len(page), "offset": offset, "limit": limit, "items": page})

    async def items(self, request: Request) -> JSONResponse:
        return await self._answer(request, self._current(request))

    async def deleted_items(self, request: Request) -> JSONResponse:
        return await self._answer(request, self._current(request))

    def _current(self, request: Request) -> list[dict[str, Any]]:
        """What the list endpoint holds right now, filtered and sorted as Ecwid would."""
        kind = request.path_params["kind"]
        if request.url.path.endswith("/deleted"):
            since = int(request.query_params.get("from_date", "0"))
            with self.lock:
                return [r for r in self.deleted.get(kind, []) if _unix(r["date"]) >= since]
        with self.lock:
            found = list(self.objects.get(kind, {}).values())
        since_text = request.query_params.get("updatedFrom")
        if since_text is not None and kind in UPDATED_FIELD:
            found = [i for i in found if i[UPDATED_FIELD[kind]] >= int(since_text)]
        elif since_text is not None and kind == "customers":
            found = [i for i in found if _unix(i["updated"]) >= int(since_text)]
        if kind == "customers":
            found.sort(key=lambda i: (_unix(i["updated"]), i["id"]))
        elif kind != "categories":
            found.sort(key=lambda i: (i["updateTimestamp"], str(i.get("id", i.get("cartId")))))
        return found

    async def latest_stats(self, request: Request) -> JSONResponse:
        refused = self._check(request)
        if refused is not None:
            return refused
        fault = self._fault(request)
        if fault is not None and fault.status != 200:
            return JSONResponse(fault.body, fault.status, headers=fault.headers)
        return JSONResponse({"categoriesUpdated": self.categories_updated, "ordersUpdated": date(int(time.time()))})


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _unix(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z").timestamp())
