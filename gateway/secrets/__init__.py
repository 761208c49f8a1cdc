"""Secrets at rest: upstream keys sealed with AES-256-GCM, client keys kept as HMAC digests."""

from __future__ import annotations

from gateway.secrets.client_keys import key_hint, new_client_key
from gateway.secrets.keyring import Keyring, SecretError, load_keyring

__all__ = ["Keyring", "SecretError", "key_hint", "load_keyring", "new_client_key"]
