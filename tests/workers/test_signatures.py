"""Known-answer tests for both signatures (vectors from ecwid.md §2 and cloud-elements.md §3)."""

from __future__ import annotations

import pytest

from workers.signatures import (
    ecwid_signature,
    ecwid_signature_matches,
    elements_signature,
    elements_signature_matches,
    verified_secrets,
)

ECWID_VECTORS = [
    (
        "test_client_secret",
        "1234567",
        "80aece08-40e8-4145-8764-6c2f0d38678",
        "ekmGPQc/IpCwO6woAiM+L8uvY6chew4n6JVQCiDrEVw=",
    ),
    (
        "abcde123456789",
        "1234567",
        "80aece08-40e8-4145-8764-6c2f0d38678",
        "lidx/4J5L2Pp4auvwGBp6DwPkpPmyVLI3oLB440X358=",
    ),
    (
        "abcde123456789",
        "1469429915",
        "08a78904-4c1a-0aa0-953a-2e33c56236f1",
        "5ad1SEWaZjQxg+X1HCewFW0E1pvHN13v4slaZkwcu+E=",
    ),
]


@pytest.mark.parametrize(("secret", "created", "event_id", "expected"), ECWID_VECTORS)
def test_ecwid_vectors(secret: str, created: str, event_id: str, expected: str) -> None:
    assert ecwid_signature(secret, created, event_id) == expected
    assert ecwid_signature_matches(expected, secret, created, event_id)


def test_ecwid_signature_rejects_changes() -> None:
    secret, created, event_id, good = ECWID_VECTORS[0]
    assert not ecwid_signature_matches(good, "another-secret", created, event_id)
    assert not ecwid_signature_matches(good, secret, "1234568", event_id)
    assert not ecwid_signature_matches(good, secret, created, event_id + "0")
    assert not ecwid_signature_matches(good.lower(), secret, created, event_id)
    assert not ecwid_signature_matches("not base64 ✓", secret, created, event_id)


def test_verified_secrets_fails_closed() -> None:
    secret, created, event_id, good = ECWID_VECTORS[0]
    assert verified_secrets(None, [secret], created, event_id) == set()
    assert verified_secrets("", [secret], created, event_id) == set()
    assert verified_secrets("   ", [secret], created, event_id) == set()
    assert verified_secrets(good, [], created, event_id) == set()
    assert verified_secrets(good, ["", "other", secret], created, event_id) == {secret}


def test_elements_vector() -> None:
    body = b"<INSERT_EVENT_NOTIFICATION_RESPONSE_BODY>"
    expected = "sha256=jHdbRx5EZAsOfTwAPJOGkNUzQMVVdu5VJlxcsk+G6jQ="
    assert elements_signature("MySecretEventSignatureKey", body) == expected
    assert elements_signature_matches(expected, "MySecretEventSignatureKey", body)
    assert not elements_signature_matches(expected, "MySecretEventSignatureKey", body + b" ")
    assert not elements_signature_matches(expected, "OtherKey", body)
