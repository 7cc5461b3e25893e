"""Cached HMAC key states verify exactly as the one-shot signature functions do."""

from __future__ import annotations

import pytest

from receiver.signature_keys import SignatureKeys
from workers.signatures import ecwid_signature, verified_secrets

# Known answer: base64(HMAC-SHA256("test-secret", "1700000000.evt-1")), from openssl dgst -sha256 -hmac.
KNOWN = ("test-secret", "1700000000", "evt-1", "Hqtjn/pTBxCLqYypfuGIbBGLBomPUN0IzA34Mr9kfik=")


def test_known_answer() -> None:
    secret, created, event_id, signature = KNOWN
    assert ecwid_signature(secret, created, event_id) == signature
    keys = SignatureKeys()
    for _ in range(3):  # the cached state is copied, never consumed
        assert keys.verified(signature, [secret, "other"], created, event_id) == {secret}
        assert keys.verified(f"  {signature}\n", [secret], created, event_id) == {secret}


@pytest.mark.parametrize(
    "signature",
    [None, "", "   ", KNOWN[3][:-1], KNOWN[3].rstrip("="), KNOWN[3].lower(), "x" * 44, "é" + KNOWN[3][1:]],
)
def test_anything_else_verifies_nothing(signature: str | None) -> None:
    secret, created, event_id, _ = KNOWN
    assert SignatureKeys().verified(signature, [secret, ""], created, event_id) == set()
    assert verified_secrets(signature, [secret, ""], created, event_id) == set()


def test_agrees_with_the_one_shot_functions_and_forgets_the_oldest_key() -> None:
    keys = SignatureKeys(max_keys=3)
    secrets = [f"secret-{n}" for n in range(6)] + [""]
    for n in range(40):
        created, event_id = str(1700000000 + n), f"evt-{n}"
        signature = ecwid_signature(secrets[n % 6], created, event_id)
        candidates = secrets[n % 4 :]
        expected = verified_secrets(signature, candidates, created, event_id)
        assert keys.verified(signature, candidates, created, event_id) == expected
        assert keys.verified(signature, candidates, created, "evt-other") == set()  # eventId is signed
    assert len(keys._states) == 3
