"""The fleet key every test service shares, and tokens signed with it: one definition, so a test
that needs a token with less permission, or one signed with another fleet's key, says only that."""

from __future__ import annotations

from services.common.auth import Permission, create_token

# The fleet key every test service shares (tests sign their own tokens with it).
TEST_SECRET = "test-fleet-key-0123456789abcdef-0123456789abcdef"


def token(permission: Permission = Permission.ADMIN, secret: str = TEST_SECRET, subject: str = "test") -> str:
    """A bearer token for the test fleet (admin unless asked otherwise)."""
    return create_token(secret.encode(), permission, subject=subject)
