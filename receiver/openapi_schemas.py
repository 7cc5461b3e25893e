"""The body schemas and auth schemes of receiver/openapi.py (JSON Schema 2020-12, as OpenAPI 3.1)."""

from __future__ import annotations

from typing import Any

NULLABLE_STRING = {"type": ["string", "null"]}
TIME = {"type": "string", "description": "ISO 8601, UTC"}

SECURITY_SCHEMES: dict[str, Any] = {
    "userOrganization": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`User <user secret>, Organization <organization secret>` (RELAY_USER_SECRETS, "
        "RELAY_ORGANIZATION_SECRET). An instance belongs to the user who created it.",
    },
    "elementToken": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Element <instance token>`: the `token` of the instance, for posting polling results.",
    },
    "ecwidSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Ecwid-Webhook-Signature",
        "description": "Ecwid's signature: base64(HMAC-SHA256(client secret, `{eventCreated}.{eventId}`)), "
        "checked against the instances' oauth.api.secret and RELAY_ECWID_CLIENT_SECRETS.",
    },
    "ionSecret": {
        "type": "apiKey",
        "in": "query",
        "name": "secret",
        "description": "Legacy ION Cannon form posts: the instance's `ecwid.ion.secret`.",
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["requestId", "message"],
        "properties": {
            "requestId": {"type": "string", "description": "Also in the X-Request-Id header and our logs."},
            "message": {"type": "string"},
            "providerMessage": {"type": "string", "description": "What Ecwid said, when Ecwid refused."},
        },
    },
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok", "ready"]}}},
    "EcwidWebhook": {
        "type": "object",
        "description": "An Ecwid API v3 webhook, as Ecwid sends it.",
        "required": ["eventId", "eventCreated", "storeId", "eventType"],
        "properties": {
            "eventId": {"type": ["string", "integer"]},
            "eventCreated": {"type": "integer"},
            "storeId": {"type": ["integer", "string"]},
            "entityId": {"type": ["integer", "string"]},
            "eventType": {"type": "string", "examples": ["order.created"]},
            "data": {"type": "object"},
        },
    },
    "IonPost": {
        "type": "object",
        "description": "A legacy ION Cannon form post (storeId, orderNumber, ...).",
        "additionalProperties": {"type": "string"},
    },
    "IngestAnswer": {
        "type": "object",
        "required": ["requestId", "eventId", "instances", "message"],
        "properties": {
            "requestId": {"type": "string"},
            "eventId": {"type": "string"},
            "instances": {"type": "array", "items": {"type": "integer"}},
            "message": {"type": "string", "description": "accepted, duplicate, or why it is not forwarded"},
        },
    },
    "PollResultsAnswer": {
        "type": "object",
        "required": ["requestId", "instances", "items", "message"],
        "properties": {
            "requestId": {"type": "string"},
            "instances": {"type": "array", "items": {"type": "integer"}},
            "items": {"type": "integer"},
            "message": {"type": "string"},
        },
    },
    "OAuthUrl": {
        "type": "object",
        "required": ["element", "oauthUrl"],
        "properties": {"element": {"const": "ecwid"}, "oauthUrl": {"type": "string"}},
    },
    "InstanceRequest": {
        "type": "object",
        "description": "Cloud Elements' instance body. `element.key` and `configuration` are required to "
        "create; `providerData.code` creates an OAuth2 instance. Unknown configuration keys are a 400.",
        "properties": {
            "element": {"type": "object", "properties": {"key": {"type": "string", "examples": ["ecwid"]}}},
            "name": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "disabled": {"type": "boolean"},
            "providerData": {"type": "object", "properties": {"code": {"type": "string"}}},
            "delivery": {
                "type": "object",
                "description": "PUT or PATCH only: pause (true) or resume (false) deliveries by hand.",
                "properties": {"paused": {"type": "boolean"}},
            },
            "configuration": {
                "type": "object",
                "additionalProperties": {"type": ["string", "boolean", "number", "null"]},
                "examples": [{"ecwid.store.id": "1003", "ecwid.order.key": "k1", "ecwid.product.key": "k2"}],
            },
        },
    },
    "Instance": {
        "type": "object",
        "required": ["id", "name", "token", "element", "configuration", "disabled", "eventsEnabled", "delivery"],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "token": {"type": "string"},
            "element": {"type": "object", "required": ["key"], "properties": {"key": {"const": "ecwid"}}},
            "authenticationType": {"enum": ["oauth2", "custom"]},
            "disabled": {"type": "boolean"},
            "eventsEnabled": {"type": "boolean"},
            "eventsNotificationCallbackUrl": NULLABLE_STRING,
            "createdDate": TIME,
            "updatedDate": TIME,
            "configuration": {
                "type": "object",
                "description": "Every key; unset ones null, secrets `********`.",
                "additionalProperties": NULLABLE_STRING,
            },
            "tags": {"type": "array", "items": {"type": "string"}},
            "user": {"type": "object", "properties": {"id": {"type": "string"}}},
            "delivery": {
                "type": "object",
                "description": "Whether deliveries flow, are paused (since when, why) or drain a buffer.",
                "required": ["state", "paused", "buffered"],
                "properties": {
                    "state": {"enum": ["active", "paused", "draining"]},
                    "paused": {"type": "boolean"},
                    "since": NULLABLE_STRING,
                    "reason": NULLABLE_STRING,
                    "resumesByHand": {"type": "boolean"},
                    "nextProbeDate": NULLABLE_STRING,
                    "consecutiveFailures": {"type": "integer"},
                    "buffered": {"type": "integer"},
                    "concurrency": {"type": "integer"},
                    "pauseThreshold": {"type": "integer"},
                },
            },
            "polling": {"type": "object", "description": "Polling instances only: what the poller is doing."},
        },
    },
    "Deleted": {
        "type": "object",
        "required": ["id", "deleted"],
        "properties": {"id": {"type": "integer"}, "deleted": {"const": True}},
    },
    "EventRecord": {
        "type": "object",
        "required": ["id", "instanceId", "status", "attempts"],
        "properties": {
            "id": {"type": "string", "description": "The notification id, sent as Elements-Webhook-Id."},
            "eventId": NULLABLE_STRING,
            "instanceId": {"type": "integer"},
            "eventDate": TIME,
            "updatedDate": TIME,
            "status": {"enum": ["RECEIVED", "DISPATCHED", "PAUSED", "NOTIFIED", "FAILED", "SKIPPED"]},
            "reason": NULLABLE_STRING,
            "nextAttemptDate": {"type": ["string", "null"]},
            "events": {"type": "array", "items": {"type": "object"}},
            "attempts": {"type": "array", "items": {"type": "object"}},
            "replays": {"type": "integer"},
            "providerData": {"description": "The Ecwid body the notification came from."},
        },
    },
    "ReplayAnswer": {
        "type": "object",
        "required": ["requestId", "queued", "ids"],
        "properties": {
            "requestId": {"type": "string"},
            "queued": {"type": "integer"},
            "ids": {"type": "array", "items": {"type": "string"}},
            "nextPage": NULLABLE_STRING,
        },
    },
}
