"""Instance configuration: the keys we honour, their defaults, and how values are checked.

Values are stored as strings, the way Cloud Elements stores them, so the API can
echo them back unchanged. JSON booleans and numbers are accepted on input and
normalised to their string form here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

Kind = Literal[
    "bool", "text", "url", "minutes", "vendor", "notification", "objects", "store", "scheme", "whsec", "count"
]
SCHEMES = ("elements", "standard", "both")

POLLABLE_OBJECTS = ("orders", "products", "customers", "categories", "carts")
MASK = "********"
MAX_COUNT = 1000


@dataclass(frozen=True)
class Key:
    name: str
    kind: Kind
    default: str | None = None
    secret: bool = False


KEYS: dict[str, Key] = {
    key.name: key
    for key in (
        Key("event.notification.enabled", "bool", "false"),
        Key("event.vendor.type", "vendor", "webhook"),
        Key("event.notification.type", "notification", "webhook"),
        Key("event.notification.callback.url", "url"),
        Key("event.notification.signature.key", "text", secret=True),
        Key("event.notification.signature.scheme", "scheme", "elements"),
        Key("event.notification.standardwebhooks.secret", "whsec", secret=True),
        Key("event.notification.concurrency", "count", "4"),
        Key("event.notification.pause.threshold", "count", "20"),
        Key("event.poller.refresh_interval", "minutes", "15"),
        Key("event.objects", "objects", ",".join(POLLABLE_OBJECTS)),
        Key("filter.response.nulls", "bool", "true"),
        Key("ecwid.store.id", "store"),
        Key("ecwid.order.key", "text", secret=True),
        Key("ecwid.product.key", "text", secret=True),
        Key("ecwid.api.token", "text", secret=True),
        Key("oauth.api.key", "text"),
        Key("oauth.api.secret", "text", secret=True),
        Key("oauth.callback.url", "url"),
        Key("ecwid.ion.enabled", "bool", "false"),
        Key("ecwid.ion.secret", "text", secret=True),
    )
}

OAUTH_REQUIRED = ("oauth.api.key", "oauth.api.secret", "oauth.callback.url")
CUSTOM_REQUIRED = ("ecwid.store.id", "ecwid.order.key", "ecwid.product.key")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_MAX_TEXT = 2048
DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() accepts "²", which int() rejects


def normalize(raw: Mapping[str, object]) -> tuple[dict[str, str | None], list[str]]:
    """Normalise a `configuration` object from a request.

    Returns the values as strings (None where the client sent null, meaning "unset")
    and a list of error messages; nothing raises.
    """
    values: dict[str, str | None] = {}
    errors: list[str] = []
    unknown = sorted(name for name in raw if name not in KEYS)
    if unknown:
        errors.append("unknown configuration keys: " + ", ".join(unknown[:20]))
    for name, value in raw.items():
        key = KEYS.get(name)
        if key is None:
            continue
        if value is None:
            values[name] = None
            continue
        text, error = _normalize_value(key, value)
        if error:
            errors.append(f"{name} {error}")
        else:
            values[name] = text
    return values, errors


def _normalize_value(key: Key, value: object) -> tuple[str, str | None]:
    if isinstance(value, bool):
        if key.kind != "bool":
            return "", "must be a string"
        return ("true" if value else "false"), None
    if isinstance(value, int) and key.kind in ("minutes", "store", "count"):
        value = str(value)
    if not isinstance(value, str):
        return "", "must be a string" if key.kind != "bool" else "must be true or false"
    text = value.strip()
    if len(text) > _MAX_TEXT:
        return "", f"must be at most {_MAX_TEXT} characters"
    if key.kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE:
            return "true", None
        if lowered in _FALSE:
            return "false", None
        return "", "must be true or false"
    if key.kind == "vendor":
        lowered = text.lower()
        if lowered in ("webhook", "webhooks"):
            return "webhook", None
        if lowered == "polling":
            return "polling", None
        return "", "must be webhook or polling"
    if key.kind == "scheme":
        lowered = text.lower()
        return (lowered, None) if lowered in SCHEMES else ("", "must be one of " + ", ".join(SCHEMES))
    if key.kind == "whsec":
        return (text, None) if _whsec_ok(text) else ("", "must be whsec_ followed by 24 to 64 base64-encoded bytes")
    if key.kind == "notification":
        return (text, None) if text.lower() == "webhook" else ("", "must be webhook")
    if key.kind == "minutes":
        if not DIGITS.fullmatch(text) or int(text) < 1:
            return "", "must be a whole number of minutes, at least 1"
        return str(int(text)), None
    if key.kind == "count":
        if not DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_COUNT:
            return "", f"must be a whole number from 1 to {MAX_COUNT}"
        return str(int(text)), None
    if key.kind == "store":
        if not DIGITS.fullmatch(text) or int(text) < 1:
            return "", "must be a positive integer (the Ecwid store id)"
        return str(int(text)), None
    if key.kind == "objects":
        objects = [item.strip().lower() for item in text.split(",") if item.strip()]
        wrong = [item for item in objects if item not in POLLABLE_OBJECTS]
        if not objects or wrong:
            return "", "must list some of " + ",".join(POLLABLE_OBJECTS)
        return ",".join(dict.fromkeys(objects)), None
    if key.kind == "url":
        problem = url_problem(text)
        return (text, None) if problem is None else ("", problem)
    if not text:
        return "", "must not be empty"
    return text, None


def _whsec_ok(text: str) -> bool:
    """A Standard Webhooks symmetric secret: `whsec_` + base64 of 24 to 64 random bytes."""
    if not text.startswith("whsec_"):
        return False
    try:
        raw = base64.b64decode(text[6:] + "=" * (-len(text[6:]) % 4), validate=True)
    except ValueError:
        return False
    return 24 <= len(raw) <= 64


_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a callback URL, or None when it can.

    Only the shape is checked here; where it points is checked at connect time
    (see workers/transport.py), because DNS can change after this check.
    """
    if _CONTROL.search(url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must name a host"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if port == 0:
        return "must not use port 0"
    try:
        # The client that will send to it must agree: IDNA or odd characters it rejects fail here.
        httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "is not a valid URL"
    return None


def effective(config: Mapping[str, str], name: str) -> str | None:
    """The value in force for `name`: the stored one, else the default."""
    value = config.get(name)
    return value if value is not None else KEYS[name].default


def is_true(config: Mapping[str, str], name: str) -> bool:
    return effective(config, name) == "true"


def cross_check(config: Mapping[str, str]) -> list[str]:
    """Errors that involve more than one key, for a configuration about to be stored."""
    errors = []
    if is_true(config, "event.notification.enabled") and not config.get("event.notification.callback.url"):
        errors.append("event.notification.callback.url is required when event.notification.enabled is true")
    if is_true(config, "ecwid.ion.enabled") and len(config.get("ecwid.ion.secret") or "") < 16:
        errors.append("ecwid.ion.secret of at least 16 characters is required when ecwid.ion.enabled is true")
    if effective(config, "event.notification.signature.scheme") in ("standard", "both") and not config.get(
        "event.notification.standardwebhooks.secret"
    ):
        errors.append(
            "event.notification.standardwebhooks.secret (whsec_...) is required when "
            "event.notification.signature.scheme is standard or both"
        )
    return errors


def public_view(config: Mapping[str, str]) -> dict[str, str | None]:
    """Every known key as a string, unset keys as null, secrets masked."""
    view: dict[str, str | None] = {}
    for name, key in KEYS.items():
        value = effective(config, name)
        view[name] = MASK if (key.secret and value is not None) else value
    return view
