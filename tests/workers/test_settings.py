"""Settings: one frozen object, bad values named, secrets masked."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from workers.settings import Settings, SettingsError

GOOD = {
    "RELAY_REDIS_URL": "redis://127.0.0.1:6399/0",
    "RELAY_ORGANIZATION_SECRET": "organization-secret-123",
    "RELAY_USER_SECRETS": "user-secret-one-123, user-secret-two-456",
    "RELAY_ECWID_CLIENT_SECRETS": "client-a,client-b",
    "RELAY_CALLBACK_ALLOW_NETS": "127.0.0.0/8, ::1/128",
}


def test_reads_every_setting() -> None:
    settings = Settings.from_env(GOOD)
    assert settings.redis_url == "redis://127.0.0.1:6399/0"
    assert [s.value for s in settings.user_secrets] == ["user-secret-one-123", "user-secret-two-456"]
    assert [s.value for s in settings.ecwid_client_secrets] == ["client-a", "client-b"]
    assert settings.callback_allow_nets == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert settings.ecwid_oauth_url == "https://my.ecwid.com/api/oauth"
    assert settings.ecwid_api_url == "https://app.ecwid.com/api/v3"
    assert settings.dedup_ttl == 25 * 3600
    assert settings.poll_failure_limit == 100
    assert Settings.from_env({**GOOD, "RELAY_POLL_FAILURE_LIMIT": "7"}).poll_failure_limit == 7


def test_defaults_and_empty_values() -> None:
    settings = Settings.from_env({"RELAY_CALLBACK_ALLOW_NETS": "", "RELAY_REDIS_URL": " "})
    assert settings.callback_allow_nets == ()
    assert settings.redis_url is None
    with pytest.raises(SettingsError, match="RELAY_REDIS_URL"):
        settings.require_redis_url()


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings.from_env(GOOD).redis_url = "x"  # type: ignore[misc]


def test_repr_masks_secrets() -> None:
    text = repr(Settings.from_env(GOOD))
    for secret in ("organization-secret-123", "user-secret-one-123", "client-a"):
        assert secret not in text
    assert "**********" in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RELAY_REDIS_URL", "http://localhost"),
        ("RELAY_ORGANIZATION_SECRET", "short"),
        ("RELAY_USER_SECRETS", "good-user-secret-1,,other"),
        ("RELAY_USER_SECRETS", "short"),
        ("RELAY_ECWID_OAUTH_URL", "ftp://x"),
        ("RELAY_ECWID_API_URL", "app.ecwid.com"),
        ("RELAY_CALLBACK_ALLOW_NETS", "10.0.0.0/8,not-a-net"),
        ("RELAY_DEDUP_TTL", "3600"),
        ("RELAY_DEDUP_TTL", "soon"),
        ("RELAY_LOG_LEVEL", "loud"),
        ("RELAY_POLL_FAILURE_LIMIT", "0"),
        ("RELAY_POLL_FAILURE_LIMIT", "²"),
        ("RELAY_POLL_FAILURE_LIMIT", "-5"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({**GOOD, name: value})
