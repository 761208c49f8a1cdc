"""New client keys: random, shown once, then known to Keyway only by their HMAC digest."""

from __future__ import annotations

import secrets

__all__ = ["CLIENT_KEY_PREFIX", "key_hint", "new_client_key"]

CLIENT_KEY_PREFIX = "kw-"


def new_client_key() -> str:
    """`kw-` and 32 URL-safe random characters (192 bits)."""
    return CLIENT_KEY_PREFIX + secrets.token_urlsafe(24)


def key_hint(plaintext: str) -> str:
    """What a listing may show of a key: its last four characters."""
    return f"...{plaintext[-4:]}" if len(plaintext) >= 12 else "..."
