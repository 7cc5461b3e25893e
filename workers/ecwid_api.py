"""A small client for the Ecwid REST API v3, as the poller uses it.

Every request carries `Authorization: Bearer <token>` (the query-parameter token
was switched off in March 2025, ecwid.md §5), spends one slot of the token's
shared budget (workers/rate_limit.py), and honours `Retry-After` on 429.
Errors are sorted into what the poller must treat differently: `AccessDenied`
(402/403: retrying will not help), `RateLimited`, and `Unavailable` (anything
else: network, 5xx, a body that is not what Ecwid documents).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from workers.rate_limit import BudgetExhausted, TokenBudget

PAGE_SIZE = 100  # Ecwid's maximum and default `limit`
# Each page re-reads the last PAGE_OVERLAP items of the one before. A listing that shifts while we
# page (an edit moves an item to the end, a deletion pulls the rest forward) would otherwise skip
# items at page boundaries; a shift larger than the overlap is detected and the listing re-read.
PAGE_OVERLAP = 10
LISTING_ATTEMPTS = 3
MAX_PAGES = 2000  # 180,000 records in one query: more means something is wrong
RATE_LIMIT_RETRIES = 2
DEFAULT_RETRY_AFTER = 10.0  # seconds, when a 429 does not say (as Ecwid's own Java client)
MAX_WAIT_IN_ROUND = 60.0  # longer Retry-After values end the round instead of holding a worker
MAX_RETRY_AFTER = 3600.0
_TOKEN = re.compile(r"\b(secret|public)_[A-Za-z0-9_-]+")
API_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class EcwidError(Exception):
    """A request to Ecwid failed. `str()` is safe to log and to show the instance's owner."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AccessDenied(EcwidError):
    """402 (store suspended, plan) or 403 (token invalid, scope missing)."""


class RateLimited(EcwidError):
    """429 after our retries, or our own budget for the token is spent."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class Unavailable(EcwidError):
    """Network failure, timeout, 5xx or an unexpected body: worth trying again later."""


def api_client() -> httpx.Client:
    """The HTTP client for Ecwid's API. The URL is the operator's setting, not user input,
    so it does not go through the callback SSRF guard."""
    return httpx.Client(timeout=API_TIMEOUT, follow_redirects=False, trust_env=False)


def retry_after(headers: httpx.Headers) -> float:
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER
    if not math.isfinite(seconds):
        return DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _reason(response: httpx.Response) -> str:
    """Ecwid's `errorCode`/`errorMessage`, shortened, with anything shaped like a token masked:
    the answer to a bad token might echo it, and this text reaches logs and the instance view."""
    try:
        body = orjson.loads(response.content[:4096])
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[name])[:200] for name in ("errorCode", "errorMessage") if body.get(name)]
    return _TOKEN.sub(r"\1_***", ": ".join(parts))


@dataclass
class EcwidApi:
    client: httpx.Client
    base_url: str  # RELAY_ECWID_API_URL, e.g. https://app.ecwid.com/api/v3
    store_id: int
    token: str
    budget: TokenBudget
    deadline: float  # time.monotonic() by which the caller must be done
    keepalive: Callable[[], object] | None = None  # called before each request (the poller's lock)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """GET `{base}/{storeId}{path}` and return the JSON object; raises `EcwidError`."""
        url = f"{self.base_url}/{self.store_id}{path}"
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            if self.keepalive is not None:
                self.keepalive()
            try:
                self.budget.acquire(self.token, self.deadline)
            except BudgetExhausted as exc:
                raise RateLimited(str(exc), exc.wait_seconds) from None
            try:
                response = self.client.get(
                    url, params=dict(params or {}), headers={"Authorization": f"Bearer {self.token}"}
                )
            except httpx.HTTPError as exc:
                raise Unavailable(f"GET {path}: {type(exc).__name__}") from None
            if response.status_code == 429:
                wait = retry_after(response.headers)
                self.budget.pause(self.token, wait)  # every process holds off, not only this one
                if (
                    attempt < RATE_LIMIT_RETRIES
                    and wait <= MAX_WAIT_IN_ROUND
                    and time.monotonic() + wait < self.deadline
                ):
                    continue
                raise RateLimited(f"GET {path}: 429 from Ecwid, Retry-After {wait:g} s", wait)
            return self._decode(path, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _decode(self, path: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in (402, 403):
            reason = _reason(response) or ("STORE_IS_SUSPENDED" if status == 402 else "INVALID_API_TOKEN")
            raise AccessDenied(f"GET {path}: {status} from Ecwid ({reason})", status)
        if status != 200:
            reason = _reason(response)
            raise Unavailable(f"GET {path}: {status} from Ecwid" + (f" ({reason})" if reason else ""), status)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise Unavailable(f"GET {path}: Ecwid answered 200 with a body that is not JSON", status) from None
        if not isinstance(body, dict):
            raise Unavailable(f"GET {path}: Ecwid answered 200 with a body that is not a JSON object", status)
        return body

    def list_all(self, path: str, params: Mapping[str, Any] | None = None, id_field: str = "id") -> list[Any]:
        """Every item of a list endpoint, paging with `limit=100` and `offset` until `total`.

        Items are told apart by `id_field`; one seen twice (the page overlap, or an item
        that moved) is kept once, in its last-read state. Raises `Unavailable` if the
        listing keeps shifting by more than the overlap.
        """
        for _ in range(LISTING_ATTEMPTS):
            try:
                return self._list_once(path, params or {}, id_field)
            except _Shifted:
                continue
        raise Unavailable(f"GET {path}: the listing kept changing while it was paged; trying again next round")

    def _list_once(self, path: str, params: Mapping[str, Any], id_field: str) -> list[Any]:
        items: dict[str, Any] = {}
        offset = 0
        tail: set[str] = set()
        for _ in range(MAX_PAGES):
            page = self.get(path, {**params, "limit": PAGE_SIZE, "offset": offset})
            batch, total = page.get("items"), page.get("total")
            if not isinstance(batch, list) or not isinstance(total, int) or isinstance(total, bool):
                raise Unavailable(f"GET {path}: Ecwid's answer has no items list and total count")
            ids = [_identity(item, id_field) for item in batch]
            if tail and batch and not tail & set(ids[:PAGE_OVERLAP]):
                raise _Shifted
            items.update(zip(ids, batch, strict=True))
            if not batch or offset + len(batch) >= total:
                return list(items.values())
            tail = set(ids[-PAGE_OVERLAP:])
            offset += max(1, len(batch) - PAGE_OVERLAP)
        raise Unavailable(f"GET {path}: more than {MAX_PAGES} pages; refusing to page on")


class _Shifted(Exception):
    """The listing moved by more than the page overlap between two pages."""


def _identity(item: object, id_field: str) -> str:
    if isinstance(item, dict) and item.get(id_field) is not None:
        return str(item[id_field])
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()  # no id: the item is its own identity
