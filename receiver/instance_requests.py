"""What a POST, PUT or PATCH on /instances asks for, checked before anything is stored.

Pure functions over the decoded JSON body. Every problem found is reported at
once, in one 400 message, so a client can fix its request in one go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from receiver.errors import BadRequest, NotFound
from workers import configuration as cfg
from workers.instances import AuthType

MAX_TAGS = 50
MAX_NAME = 255


@dataclass(frozen=True)
class InstanceRequest:
    name: str | None
    tags: tuple[str, ...] | None
    configuration: dict[str, str | None] | None
    code: str | None
    disabled: bool | None
    paused: bool | None = None  # `delivery.paused`: pause or resume deliveries by hand


def parse(body: dict[str, Any], *, creating: bool) -> InstanceRequest:
    """Decode and check the fields of an instance request; raises BadRequest or NotFound."""
    errors: list[str] = []
    if creating:
        element = body.get("element")
        key = element.get("key") if isinstance(element, dict) else None
        if not isinstance(key, str) or not key:
            errors.append("element.key is required")
        elif key != "ecwid":
            raise NotFound(f"element {key[:60]!r} not found; this relay serves 'ecwid'")

    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME):
        errors.append(f"name must be a non-empty string of at most {MAX_NAME} characters")
        name = None

    tags = body.get("tags")
    if tags is not None and not (
        isinstance(tags, list) and len(tags) <= MAX_TAGS
        and all(isinstance(tag, str) and 0 < len(tag) <= 100 for tag in tags)
    ):  # fmt: skip
        errors.append(f"tags must be a list of at most {MAX_TAGS} non-empty strings")
        tags = None

    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        errors.append("disabled must be true or false")
        disabled = None

    config: dict[str, str | None] | None = None
    raw_config = body.get("configuration")
    if raw_config is not None:
        if isinstance(raw_config, dict):
            config, config_errors = cfg.normalize(raw_config)
            errors.extend(config_errors)
        else:
            errors.append("configuration must be an object")

    code: str | None = None
    provider = body.get("providerData")
    if provider is not None:
        if not isinstance(provider, dict):
            errors.append("providerData must be an object")
        elif provider.get("code") is not None:
            if isinstance(provider["code"], str) and provider["code"].strip():
                code = provider["code"].strip()
            else:
                errors.append("providerData.code must be a non-empty string")
    paused = None
    delivery = body.get("delivery")
    if delivery is not None:
        if creating:
            errors.append("delivery can only be changed on an existing instance (PUT or PATCH)")
        elif not isinstance(delivery, dict):
            errors.append('delivery must be an object like {"paused": true}')
        elif delivery.get("paused") is not None and not isinstance(delivery["paused"], bool):
            errors.append("delivery.paused must be true or false")
        else:
            paused = delivery.get("paused")
    if errors:
        raise BadRequest("; ".join(errors))
    return InstanceRequest(
        name=name.strip() if isinstance(name, str) else None,
        tags=tuple(tags) if tags is not None else None,
        configuration=config,
        code=code,
        disabled=disabled,
        paused=paused,
    )


def merge(current: dict[str, str], changes: dict[str, str | None], *, replace: bool) -> dict[str, str]:
    """Apply `changes` to `current`. A masked secret keeps its stored value; null unsets.

    With `replace` (PUT), keys not mentioned are dropped; otherwise (PATCH) kept.
    """
    merged = {} if replace else dict(current)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        elif value == cfg.MASK and cfg.KEYS[name].secret:
            if name in current:
                merged[name] = current[name]
        else:
            merged[name] = value
    return merged


def check_complete(config: dict[str, str], auth: AuthType) -> None:
    """Raise BadRequest naming every missing required key and every conflict."""
    required = cfg.OAUTH_REQUIRED if auth == "oauth2" else cfg.CUSTOM_REQUIRED
    missing = [name for name in required if not config.get(name)]
    errors = []
    if missing:
        hint = "" if auth == "oauth2" else " (or send providerData.code to authenticate with OAuth2)"
        errors.append("missing required configuration: " + ", ".join(missing) + hint)
    masked = [name for name, value in config.items() if value == cfg.MASK and cfg.KEYS[name].secret]
    if masked:
        errors.append("these secrets were sent masked and have no stored value: " + ", ".join(masked))
    errors.extend(cfg.cross_check(config))
    polling = (
        cfg.is_true(config, "event.notification.enabled") and cfg.effective(config, "event.vendor.type") == "polling"
    )
    if polling and auth == "custom" and not config.get("ecwid.api.token"):
        errors.append(
            "event.vendor.type polling needs an Ecwid API token to poll with: set ecwid.api.token "
            "(the secret_... token of your custom Ecwid app), or connect the store with OAuth2"
        )
    if errors:
        raise BadRequest("; ".join(errors))
