"""`Authorization: User <user secret>, Organization <organization secret>`.

Returns the caller's user id (a hash of their secret, see workers/instances.py);
every failure is a 401 that says what is wrong without echoing any secret.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from receiver.errors import Unauthorized
from workers.instances import user_id
from workers.settings import Settings


def parse(header: str) -> dict[str, str]:
    """`User a, Organization b` -> {"user": "a", "organization": "b"}. Pure."""
    parts: dict[str, str] = {}
    for piece in header.split(","):
        scheme, _, value = piece.strip().partition(" ")
        if scheme and value.strip():
            parts[scheme.lower()] = value.strip()
    return parts


def authenticate(request: Request, settings: Settings) -> str:
    """The id of the calling user; raises Unauthorized."""
    if settings.organization_secret is None or not settings.user_secrets:
        raise Unauthorized("the instances API is off: RELAY_ORGANIZATION_SECRET and RELAY_USER_SECRETS are unset")
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("send Authorization: User <user secret>, Organization <organization secret>")
    parts = parse(header)
    user, organization = parts.get("user"), parts.get("organization")
    if user is None or organization is None:
        raise Unauthorized("Authorization must name both User and Organization secrets")
    if not hmac.compare_digest(organization.encode(), settings.organization_secret.value.encode()):
        raise Unauthorized("organization secret is not valid")
    # Compare against every user secret, so timing does not tell which one nearly matched.
    matches = [hmac.compare_digest(user.encode(), secret.value.encode()) for secret in settings.user_secrets]
    if not any(matches):
        raise Unauthorized("user secret is not valid")
    return user_id(user)
