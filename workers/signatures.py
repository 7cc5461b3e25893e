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
from collections.abc import Callable, Iterable


def ecwid_signature(client_secret: str, event_created: str, event_id: str) -> str:
    """The `X-Ecwid-Webhook-Signature` value Ecwid sends for this event."""
    message = f"{event_created}.{event_id}".encode()
    digest = hmac.digest(client_secret.encode(), message, "sha256")  # one-shot: OpenSSL's fast path
    return base64.b64encode(digest).decode("ascii")


def ecwid_signature_matches(signature: str, client_secret: str, event_created: str, event_id: str) -> bool:
    """True when `signature` is what `client_secret` produces; compared in constant time."""
    expected = ecwid_signature(client_secret, event_created, event_id)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace"))


def verified_secrets(
    signature: str | None,
    secrets: Iterable[str],
    event_created: str,
    event_id: str,
    keyed: Callable[[str], hmac.HMAC] | None = None,
) -> set[str]:
    """The secrets, among `secrets`, that produce `signature`; compared in constant time.

    Fails closed: no signature, or an empty one, verifies against nothing. `keyed` gives a fresh
    HMAC-SHA256 state for a secret (a copy of a cached one, say: receiver/signature_keys.py);
    by default one is made per secret.
    """
    if not signature or not signature.strip():
        return set()
    presented = signature.strip().encode("utf-8", "replace")
    message = f"{event_created}.{event_id}".encode()
    found = set()
    for secret in set(secrets):
        if not secret:
            continue
        mac = keyed(secret) if keyed is not None else hmac.new(secret.encode(), digestmod=hashlib.sha256)
        mac.update(message)
        if hmac.compare_digest(base64.b64encode(mac.digest()), presented):
            found.add(secret)
    return found


def elements_signature(key: str, body: bytes) -> str:
    """The `Elements-Webhook-Signature` header value for a notification body."""
    digest = hmac.new(key.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode("ascii")


def elements_signature_matches(header: str, key: str, body: bytes) -> bool:
    """Receiver-side check of `Elements-Webhook-Signature`, in constant time."""
    return hmac.compare_digest(elements_signature(key, body).encode(), header.strip().encode("utf-8", "replace"))
