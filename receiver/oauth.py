"""OAuth2 with Ecwid: the authorize URL, and the code-for-token exchange.

Ecwid's flow (ecwid.md §6): send the merchant to `{oauth}/authorize`, receive a
one-time `code` on the redirect URI, exchange it at `{oauth}/token`. Ecwid tokens
do not expire. The code is single-use, so the exchange happens once, after every
other check on the request has passed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import structlog

from receiver.errors import BadRequest, UpstreamError

log = structlog.get_logger(logger_name="receiver.oauth")

DEFAULT_SCOPE = "read_store_profile read_catalog read_orders read_customers"


def authorize_url(oauth_url: str, *, client_id: str, redirect_uri: str, scope: str, state: str | None) -> str:
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": scope,
            "state": state or secrets.token_urlsafe(16),
        }
    )
    return f"{oauth_url}/authorize?{query}"


@dataclass(frozen=True)
class Grant:
    access_token: str
    store_id: int
    scope: str


def _provider_message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        for field in ("error_description", "errorMessage", "error", "message"):
            if isinstance(body.get(field), str):
                return str(body[field])[:500]
    return response.text[:500]


async def exchange_code(
    client: httpx.AsyncClient, oauth_url: str, *, client_id: str, client_secret: str, code: str, redirect_uri: str
) -> Grant:
    """Trade `code` for a token. Raises BadRequest when Ecwid refuses the code (4xx),
    UpstreamError when Ecwid fails or cannot be reached. Never retries: codes are single-use."""
    form = {
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
        "grant_type": "authorization_code",
    }
    try:
        # POSTed as a form, so the client secret and code stay out of URLs and proxy logs.
        response = await client.post(f"{oauth_url}/token", data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        log.warning("oauth.unreachable", error=type(exc).__name__)
        raise UpstreamError("could not reach Ecwid's token endpoint", provider_message=type(exc).__name__) from None
    if 400 <= response.status_code < 500:
        raise BadRequest(
            f"Ecwid refused the authorization code ({response.status_code})",
            provider_message=_provider_message(response),
        )
    if response.status_code != 200:
        raise UpstreamError(
            f"Ecwid's token endpoint answered {response.status_code}", provider_message=_provider_message(response)
        )
    try:
        body = response.json()
        token, store_id = body["access_token"], int(body["store_id"])
    except (ValueError, KeyError, TypeError):
        raise UpstreamError("Ecwid's token response has no access_token and store_id") from None
    if not isinstance(token, str) or not token or store_id < 1:
        raise UpstreamError("Ecwid's token response has no usable access_token and store_id")
    return Grant(access_token=token, store_id=store_id, scope=str(body.get("scope", "")))
