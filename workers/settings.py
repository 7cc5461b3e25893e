"""Settings: read from the environment once, at start, into one frozen object.

Every process (receiver, worker, dev supervisor) calls `Settings.from_env()` exactly
once and passes the result down. Nothing else in the code base reads `os.environ`.
A bad value raises `SettingsError` naming the variable, so a misconfigured process
fails at start instead of at the first request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_OAUTH_URL = "https://my.ecwid.com/api/oauth"
DEFAULT_API_URL = "https://app.ecwid.com/api/v3"
# Ecwid retries for 24 h; deduplicating for 25 h covers its whole retry window.
MIN_DEDUP_TTL = 25 * 3600
# Consecutive failed polling rounds before polling stops (the Cloud Elements production value).
DEFAULT_POLL_FAILURE_LIMIT = 100
# How long the event log keeps a notification's record after its last change (7 days).
DEFAULT_EVENT_RETENTION = 7 * 24 * 3600
LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A setting has a value we cannot use. The message names the variable."""


@dataclass(frozen=True)
class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    """Everything a relay process needs to know, validated."""

    redis_url: str | None = None
    data_dir: Path = Path(".relay")
    organization_secret: Secret | None = None
    user_secrets: tuple[Secret, ...] = ()
    ecwid_oauth_url: str = DEFAULT_OAUTH_URL
    ecwid_api_url: str = DEFAULT_API_URL
    ecwid_client_secrets: tuple[Secret, ...] = ()
    callback_allow_nets: tuple[IPNetwork, ...] = ()
    dedup_ttl: int = MIN_DEDUP_TTL
    log_level: str = "info"
    poll_failure_limit: int = DEFAULT_POLL_FAILURE_LIMIT
    event_retention: int = DEFAULT_EVENT_RETENTION

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from an environment mapping; raises `SettingsError`."""

        def get(name: str) -> str | None:
            value = environ.get(name)
            if value is None or value.strip() == "":
                return None
            return value.strip()

        return cls(
            redis_url=_redis_url(get("RELAY_REDIS_URL")),
            data_dir=Path(get("RELAY_DATA_DIR") or ".relay"),
            organization_secret=_secret("RELAY_ORGANIZATION_SECRET", get("RELAY_ORGANIZATION_SECRET")),
            user_secrets=_secret_list("RELAY_USER_SECRETS", get("RELAY_USER_SECRETS")),
            ecwid_oauth_url=_http_url("RELAY_ECWID_OAUTH_URL", get("RELAY_ECWID_OAUTH_URL") or DEFAULT_OAUTH_URL),
            ecwid_api_url=_http_url("RELAY_ECWID_API_URL", get("RELAY_ECWID_API_URL") or DEFAULT_API_URL),
            ecwid_client_secrets=_secret_list("RELAY_ECWID_CLIENT_SECRETS", get("RELAY_ECWID_CLIENT_SECRETS")),
            callback_allow_nets=_networks("RELAY_CALLBACK_ALLOW_NETS", get("RELAY_CALLBACK_ALLOW_NETS")),
            dedup_ttl=_dedup_ttl(get("RELAY_DEDUP_TTL")),
            log_level=_log_level(get("RELAY_LOG_LEVEL")),
            poll_failure_limit=_positive(
                "RELAY_POLL_FAILURE_LIMIT", get("RELAY_POLL_FAILURE_LIMIT"), DEFAULT_POLL_FAILURE_LIMIT
            ),
            event_retention=_positive("RELAY_EVENT_RETENTION", get("RELAY_EVENT_RETENTION"), DEFAULT_EVENT_RETENTION),
        )

    def require_redis_url(self) -> str:
        """The Redis URL; raises `SettingsError` when a serving role starts without one."""
        if self.redis_url is None:
            raise SettingsError("RELAY_REDIS_URL must be set (only `ecwid-relay dev` starts its own Redis)")
        return self.redis_url


def _redis_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not value.startswith(("redis://", "rediss://", "unix://")):
        # The value is not echoed: it may hold a password.
        raise SettingsError("RELAY_REDIS_URL must start with redis://, rediss:// or unix://")
    return value


def _secret(name: str, value: str | None) -> Secret | None:
    if value is None:
        return None
    if len(value) < 16:
        raise SettingsError(f"{name} must be at least 16 characters long")
    return Secret(value)


def _secret_list(name: str, value: str | None) -> tuple[Secret, ...]:
    if value is None:
        return ()
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise SettingsError(f"{name} is a comma-separated list and must not contain empty entries")
    if name == "RELAY_USER_SECRETS" and any(len(item) < 16 for item in items):
        raise SettingsError(f"{name}: every user secret must be at least 16 characters long")
    return tuple(Secret(item) for item in items)


def _http_url(name: str, value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http:// or https:// URL")
    return value.rstrip("/")


def _networks(name: str, value: str | None) -> tuple[IPNetwork, ...]:
    if value is None:
        return ()
    networks = []
    for item in value.split(","):
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise SettingsError(f"{name}: {item.strip()!r} is not a CIDR network") from None
    return tuple(networks)


def _dedup_ttl(value: str | None) -> int:
    if value is None:
        return MIN_DEDUP_TTL
    try:
        seconds = int(value)
    except ValueError:
        raise SettingsError("RELAY_DEDUP_TTL must be a whole number of seconds") from None
    if seconds < MIN_DEDUP_TTL:
        raise SettingsError(f"RELAY_DEDUP_TTL must be at least {MIN_DEDUP_TTL} (25 h, Ecwid retries for 24 h)")
    return seconds


def _positive(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise SettingsError(f"{name} must be a whole number, at least 1")
    return int(value)


def _log_level(value: str | None) -> str:
    level = (value or "info").lower()
    if level not in LOG_LEVELS:
        raise SettingsError(f"RELAY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return level
