"""The element instance record, as stored in Redis and read by both processes.

An instance is one app's connection to one Ecwid store. It is kept as one JSON
document under `relay:instance:{id}`; `relay:store:{storeId}:instances` and
`relay:user:{userId}:instances` index it. Writes happen in the receiver
(receiver/instance_store.py); workers only read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from workers import configuration as cfg

AuthType = Literal["oauth2", "custom"]

ELEMENT = {
    "id": 42,
    "name": "Ecwid",
    "key": "ecwid",
    "description": "Ecwid e-commerce stores, relayed by ecwid-relay",
    "hub": "ecommerce",
    "active": True,
    "deleted": False,
}


def user_id(user_secret: str) -> str:
    """A stable, non-reversible id for the user who holds `user_secret`."""
    return hashlib.sha256(b"ecwid-relay-user:" + user_secret.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Instance:
    id: int
    owner: str
    name: str
    token: str
    auth: AuthType
    store_id: int
    configuration: dict[str, str]
    tags: tuple[str, ...] = ()
    disabled: bool = False
    created: str = ""
    updated: str = ""
    # What Ecwid's token endpoint returned (access_token, scope); never shown by the API.
    provider: dict[str, str] = field(default_factory=dict)

    # -- what the configuration means -------------------------------------------------

    @property
    def events_enabled(self) -> bool:
        return cfg.is_true(self.configuration, "event.notification.enabled")

    @property
    def subscribed(self) -> bool:
        """True when events for this instance should be forwarded right now."""
        return self.events_enabled and not self.disabled

    @property
    def callback_url(self) -> str | None:
        return self.configuration.get("event.notification.callback.url")

    @property
    def signature_key(self) -> str | None:
        return self.configuration.get("event.notification.signature.key")

    @property
    def signature_scheme(self) -> str:
        """Which signatures notifications carry: "elements", "standard" (Standard Webhooks) or "both"."""
        return cfg.effective(self.configuration, "event.notification.signature.scheme") or "elements"

    @property
    def standard_secret(self) -> str | None:
        return self.configuration.get("event.notification.standardwebhooks.secret")

    @property
    def filter_nulls(self) -> bool:
        return cfg.is_true(self.configuration, "filter.response.nulls")

    @property
    def oauth_secret(self) -> str | None:
        """The Ecwid app client secret this instance's webhooks are signed with, if any."""
        return self.configuration.get("oauth.api.secret")

    @property
    def ion_secret(self) -> str | None:
        """The shared secret that legacy ION Cannon posts must carry, when opted in."""
        if not cfg.is_true(self.configuration, "ecwid.ion.enabled"):
            return None
        return self.configuration.get("ecwid.ion.secret")

    @property
    def vendor(self) -> str:
        """How events reach us: "webhook" (Ecwid pushes) or "polling" (we ask)."""
        return cfg.effective(self.configuration, "event.vendor.type") or "webhook"

    @property
    def polls(self) -> bool:
        """True when the poller should run for this instance (failures aside)."""
        return self.subscribed and self.vendor == "polling"

    @property
    def api_token(self) -> str | None:
        """The Ecwid REST API token: a custom app's `ecwid.api.token`, else the OAuth grant's."""
        return self.configuration.get("ecwid.api.token") or self.provider.get("access_token") or None

    @property
    def concurrency(self) -> int:
        """Deliveries in flight at once to this instance's callback URL (RQ's RateLimit)."""
        return int(cfg.effective(self.configuration, "event.notification.concurrency") or "4")

    @property
    def pause_threshold(self) -> int:
        """Consecutive failed attempts after which deliveries pause (workers/pausing.py)."""
        return int(cfg.effective(self.configuration, "event.notification.pause.threshold") or "20")

    @property
    def poll_interval(self) -> int:
        """Minutes between polling rounds."""
        return int(cfg.effective(self.configuration, "event.poller.refresh_interval") or "15")

    @property
    def poll_objects(self) -> tuple[str, ...]:
        return tuple((cfg.effective(self.configuration, "event.objects") or "").split(","))

    @property
    def created_epoch(self) -> int:
        """When the instance was created, in unix seconds (where polling starts from)."""
        return int(datetime.strptime(self.created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp())

    # -- storage ----------------------------------------------------------------------

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "owner": self.owner,
                "name": self.name,
                "token": self.token,
                "auth": self.auth,
                "store_id": self.store_id,
                "configuration": self.configuration,
                "tags": list(self.tags),
                "disabled": self.disabled,
                "created": self.created,
                "updated": self.updated,
                "provider": self.provider,
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> Instance:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            id=int(data["id"]),
            owner=str(data["owner"]),
            name=str(data["name"]),
            token=str(data["token"]),
            auth=data["auth"],
            store_id=int(data["store_id"]),
            configuration={str(k): str(v) for k, v in data["configuration"].items()},
            tags=tuple(str(tag) for tag in data.get("tags", ())),
            disabled=bool(data.get("disabled", False)),
            created=str(data.get("created", "")),
            updated=str(data.get("updated", "")),
            provider={str(k): str(v) for k, v in data.get("provider", {}).items()},
        )

    def evolve(self, **changes: Any) -> Instance:
        return replace(self, **changes)

    # -- the API view -----------------------------------------------------------------

    def public(self) -> dict[str, Any]:
        """The instance as the `/instances` API shows it: secrets masked, unset keys null."""
        return {
            "id": self.id,
            "name": self.name,
            "token": self.token,
            "element": {**ELEMENT, "typeOauth": self.auth == "oauth2"},
            "authenticationType": self.auth,
            "provisionInteractions": [],
            "valid": True,
            "disabled": self.disabled,
            "eventsEnabled": self.events_enabled,
            "eventsNotificationCallbackUrl": self.callback_url,
            "traceLoggingEnabled": False,
            "cachingEnabled": False,
            "externalAuthentication": "none",
            "createdDate": self.created,
            "updatedDate": self.updated,
            "configuration": cfg.public_view(self.configuration),
            "tags": list(self.tags),
            "user": {"id": self.owner},
        }


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
