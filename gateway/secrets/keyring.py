"""The master keys and the sealing of upstream secrets with AES-256-GCM.

A sealed secret is one printable string, ``kw1:<key id>:<base64url(nonce || ciphertext+tag)>``:
it names the master key that sealed it, so several master keys can be in use at once while a
rotation runs. The associated data binds each ciphertext to its record (``upstream-key:
openai/oa-1``): a ciphertext copied to another record does not open there.

The master keys come from ``KEYWAY_MASTER_KEY`` or the file named by ``KEYWAY_MASTER_KEY_FILE``:
either one base64 key of 32 bytes (its id is derived from it) or ``id:base64`` entries separated
by commas or newlines, the first being the current key that seals; the others only open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Keyring", "SecretError", "load_keyring", "parse_master_keys", "sealed_key_id"]

_PREFIX = "kw1"
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NONCE_BYTES = 12


class SecretError(ValueError):
    """A secret cannot be sealed or opened; the message never contains secret material."""


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in text or "_" in text) else None,
                               validate=True)  # fmt: skip
    except (binascii.Error, ValueError):
        raise SecretError(f"{where}: a master key must be base64") from None
    if len(raw) != 32:
        raise SecretError(f"{where}: a master key must be 32 bytes (base64 of 32 random bytes)")
    return raw


def parse_master_keys(text: str, where: str = "KEYWAY_MASTER_KEY") -> list[tuple[str, bytes]]:
    """`text` -> [(key id, 32 bytes)], current first; raises `SecretError`."""
    entries = [e.strip() for e in re.split(r"[,\n]", text) if e.strip()]
    if not entries:
        raise SecretError(f"{where}: no master key given")
    keys: list[tuple[str, bytes]] = []
    for i, entry in enumerate(entries):
        kid, sep, material = entry.partition(":")
        if not sep:
            if len(entries) > 1:
                raise SecretError(f"{where}: with several keys, write each as id:base64")
            raw = _decode_key(entry, where)
            kid = "k-" + hashlib.sha256(raw).hexdigest()[:8]
        else:
            if not _KEY_ID.match(kid):
                raise SecretError(f"{where}[{i}]: a key id is 1-32 of A-Z a-z 0-9 _ -")
            raw = _decode_key(material, f"{where}[{i}]")
        if any(kid == seen for seen, _ in keys):
            raise SecretError(f"{where}: duplicate key id {kid!r}")
        keys.append((kid, raw))
    return keys


def sealed_key_id(sealed: str) -> str:
    """The master key id a sealed secret names (no decryption)."""
    parts = sealed.split(":")
    if len(parts) != 3 or parts[0] != _PREFIX or not _KEY_ID.match(parts[1]):
        raise SecretError("not a sealed secret")
    return parts[1]


class Keyring:
    """The configured master keys: the first seals, every one of them opens."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise SecretError("a keyring needs at least one master key")
        self._ciphers = {kid: AESGCM(raw) for kid, raw in keys}
        self.current = keys[0][0]
        self.key_ids: tuple[str, ...] = tuple(kid for kid, _ in keys)

    def __repr__(self) -> str:
        return f"Keyring(current={self.current!r}, key_ids={self.key_ids!r})"

    def seal(self, plaintext: str, binding: str) -> str:
        """Encrypt `plaintext` under the current key, bound to `binding` (e.g. provider/key id)."""
        nonce = os.urandom(_NONCE_BYTES)
        body = self._ciphers[self.current].encrypt(nonce, plaintext.encode(), binding.encode())
        token = base64.urlsafe_b64encode(nonce + body).decode().rstrip("=")
        return f"{_PREFIX}:{self.current}:{token}"

    def open(self, sealed: str, binding: str) -> str:
        """Decrypt; raises `SecretError` for an unknown key id, another binding, or tampering."""
        kid = sealed_key_id(sealed)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SecretError(f"sealed with master key {kid!r}, which is not configured")
        token = sealed.split(":", 2)[2]
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise SecretError("sealed secret is not valid base64") from None
        if len(raw) <= _NONCE_BYTES + 16:
            raise SecretError("sealed secret is too short")
        try:
            plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], binding.encode())
        except InvalidTag:
            raise SecretError(
                f"sealed secret does not open for {binding!r} (tampered, or moved from another record)"
            ) from None
        return plain.decode()

    def reseal(self, sealed: str, binding: str) -> str | None:
        """The same secret sealed under the current key, or None when it already is."""
        if sealed_key_id(sealed) == self.current:
            return None
        return self.seal(self.open(sealed, binding), binding)


def load_keyring(env: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring from KEYWAY_MASTER_KEY or KEYWAY_MASTER_KEY_FILE; None when neither is set."""
    env = os.environ if env is None else env
    inline = env.get("KEYWAY_MASTER_KEY", "")
    path = env.get("KEYWAY_MASTER_KEY_FILE", "")
    if inline and path:
        raise SecretError("set KEYWAY_MASTER_KEY or KEYWAY_MASTER_KEY_FILE, not both")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecretError(
                f"KEYWAY_MASTER_KEY_FILE: cannot read {path}: {exc.strerror}"
            ) from None
        return Keyring(parse_master_keys(text, "KEYWAY_MASTER_KEY_FILE"))
    if inline:
        return Keyring(parse_master_keys(inline))
    return None
