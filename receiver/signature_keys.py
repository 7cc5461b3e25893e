"""Verifying `X-Ecwid-Webhook-Signature` with HMAC key states made once per client secret.

`hmac.digest(key, ...)` derives the key's inner and outer pads on every call; a webhook
is checked against the same few client secrets again and again, so each secret's keyed
state is made once and copied per check, for `workers.signatures.verified_secrets`
(tests/receiver/test_signature_keys.py checks both against known answers): no I/O,
strings in, a set of secrets out.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from workers.signatures import verified_secrets

# More client secrets than any receiver trusts; past it the oldest state is dropped.
MAX_KEYS = 10_000


class SignatureKeys:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._states: dict[str, hmac.HMAC] = {}
        self._max_keys = max_keys

    def verified(self, signature: str | None, secrets: Iterable[str], event_created: str, event_id: str) -> set[str]:
        """The secrets, among `secrets`, that produce `signature` for this event (see
        `workers.signatures.verified_secrets`: constant time, fails closed)."""
        return verified_secrets(signature, secrets, event_created, event_id, keyed=self._copy)

    def _copy(self, secret: str) -> hmac.HMAC:
        return self._state(secret).copy()

    def _state(self, secret: str) -> hmac.HMAC:
        state = self._states.get(secret)
        if state is None:
            if len(self._states) >= self._max_keys:
                del self._states[next(iter(self._states))]
            state = self._states[secret] = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        return state
