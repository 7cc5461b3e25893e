"""Verifying `X-Ecwid-Webhook-Signature` with HMAC key states made once per client secret.

`hmac.digest(key, ...)` derives the key's inner and outer pads on every call; a webhook
is checked against the same few client secrets again and again, so each secret's keyed
state is made once and copied per check. The result is exactly that of
`workers.signatures.verified_secrets` (tests/receiver/test_signature_keys.py checks both
against known answers): no I/O, strings in, a set of secrets out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable

# More client secrets than any receiver trusts; past it the oldest state is dropped.
MAX_KEYS = 10_000


class SignatureKeys:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._states: dict[str, hmac.HMAC] = {}
        self._max_keys = max_keys

    def verified(self, signature: str | None, secrets: Iterable[str], event_created: str, event_id: str) -> set[str]:
        """The secrets, among `secrets`, that produce `signature` for this event; compared in
        constant time. Fails closed: no signature, or a blank one, verifies against nothing."""
        if not signature or not signature.strip():
            return set()
        presented = signature.strip().encode("utf-8", "replace")
        message = f"{event_created}.{event_id}".encode()
        found = set()
        for secret in set(secrets):
            if not secret:
                continue
            mac = self._state(secret).copy()
            mac.update(message)
            if hmac.compare_digest(base64.b64encode(mac.digest()), presented):
                found.add(secret)
        return found

    def _state(self, secret: str) -> hmac.HMAC:
        state = self._states.get(secret)
        if state is None:
            if len(self._states) >= self._max_keys:
                del self._states[next(iter(self._states))]
            state = self._states[secret] = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        return state
