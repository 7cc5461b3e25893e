"""Signature code: pure functions, bytes in, bool or string out. No I/O, no clock.

Two signatures matter to the relay:

* Ecwid signs each webhook with `X-Ecwid-Webhook-Signature`:
  base64(HMAC-SHA256(client_secret, f"{eventCreated}.{eventId}")). Only those two
  fields are covered, not the body (ecwid.md §2).
* We sign each notification we forward with `Elements-Webhook-Signature`:
  "sha256=" + base64(HMAC-SHA256(signature key, exact body bytes)) (cloud-elements.md §3).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def ecwid_signature(client_secret: str, event_created: str, event_id: str) -> str:
    """The `X-Ecwid-Webhook-Signature` value Ecwid sends for this event."""
    message = f"{event_created}.{event_id}".encode()
    digest = hmac.digest(client_secret.encode(), message, "sha256")  # one-shot: OpenSSL's fast path
    return base64.b64encode(digest).decode("ascii")


def ecwid_signature_matches(signature: str, client_secret: str, event_created: str, event_id: str) -> bool:
    """True when `signature` is what `client_secret` produces; compared in constant time."""
    expected = ecwid_signature(client_secret, event_created, event_id)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace"))


def verified_secrets(signature: str | None, secrets: Iterable[str], event_created: str, event_id: str) -> set[str]:
    """The secrets, among `secrets`, that produce `signature`. Empty when it is missing.

    Fails closed: no signature, or an empty one, verifies against nothing.
    """
    if not signature or not signature.strip():
        return set()
    return {
        secret
        for secret in set(secrets)
        if secret and ecwid_signature_matches(signature, secret, event_created, event_id)
    }


def elements_signature(key: str, body: bytes) -> str:
    """The `Elements-Webhook-Signature` header value for a notification body."""
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


def elements_signature_matches(header: str, key: str, body: bytes) -> bool:
    """Receiver-side check of `Elements-Webhook-Signature`, in constant time."""
    return hmac.compare_digest(elements_signature(key, body).encode(), header.strip().encode("utf-8", "replace"))
