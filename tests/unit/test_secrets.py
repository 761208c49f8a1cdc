"""Sealed upstream secrets: round trip, binding, tampering, several master keys, key parsing."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from gateway.secrets import key_hint, new_client_key
from gateway.secrets.keyring import (
    Keyring,
    SecretError,
    load_keyring,
    parse_master_keys,
    sealed_key_id,
)

SECRET = "sk-canary-0123456789abcdef"
BINDING = "upstream-key:openai/oa-1"


def _b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _ring(*ids: str) -> Keyring:
    return Keyring([(kid, os.urandom(32)) for kid in ids])


def test_a_sealed_secret_opens_to_the_same_plaintext_and_does_not_contain_it() -> None:
    ring = _ring("m1")
    sealed = ring.seal(SECRET, BINDING)
    assert SECRET not in sealed
    assert sealed.startswith("kw1:m1:")
    assert ring.open(sealed, BINDING) == SECRET


def test_two_seals_of_one_secret_differ() -> None:
    ring = _ring("m1")
    assert ring.seal(SECRET, BINDING) != ring.seal(SECRET, BINDING)


def test_a_ciphertext_moved_to_another_record_does_not_open() -> None:
    ring = _ring("m1")
    sealed = ring.seal(SECRET, BINDING)
    with pytest.raises(SecretError, match="tampered, or moved"):
        ring.open(sealed, "upstream-key:openai/oa-2")


@pytest.mark.parametrize("position", [10, -1, -20])
def test_a_flipped_byte_anywhere_in_the_ciphertext_fails(position: int) -> None:
    ring = _ring("m1")
    sealed = ring.seal(SECRET, BINDING)
    head, token = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[position] ^= 0x01
    forged = head + ":" + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(SecretError):
        ring.open(forged, BINDING)


def test_relabelling_the_key_id_does_not_open_under_another_master_key() -> None:
    ring = _ring("m2", "m1")
    sealed = ring.seal(SECRET, BINDING)  # under m2
    relabelled = sealed.replace("kw1:m2:", "kw1:m1:", 1)
    with pytest.raises(SecretError):
        ring.open(relabelled, BINDING)


def test_rotation_keeps_old_secrets_readable_and_reseals_under_the_current_key() -> None:
    old_raw, new_raw = os.urandom(32), os.urandom(32)
    before = Keyring([("old", old_raw)])
    sealed_old = before.seal(SECRET, BINDING)
    after = Keyring([("new", new_raw), ("old", old_raw)])
    assert after.open(sealed_old, BINDING) == SECRET
    resealed = after.reseal(sealed_old, BINDING)
    assert resealed is not None and sealed_key_id(resealed) == "new"
    assert after.reseal(resealed, BINDING) is None
    only_new = Keyring([("new", new_raw)])
    assert only_new.open(resealed, BINDING) == SECRET
    with pytest.raises(SecretError, match="'old', which is not configured"):
        only_new.open(sealed_old, BINDING)


def test_errors_never_carry_the_secret() -> None:
    ring = _ring("m1")
    sealed = ring.seal(SECRET, BINDING)
    for attempt in (lambda: ring.open(sealed, "other"), lambda: _ring("m9").open(sealed, BINDING)):
        with pytest.raises(SecretError) as info:
            attempt()
        assert SECRET not in str(info.value)
    assert "m1" in repr(ring) and SECRET not in repr(ring)


def test_one_bare_master_key_gets_a_stable_derived_id() -> None:
    text = _b64()
    [(kid, raw)] = parse_master_keys(text)
    assert re.fullmatch(r"k-[0-9a-f]{8}", kid)
    assert parse_master_keys(text)[0][0] == kid
    assert len(raw) == 32


def test_several_master_keys_keep_their_order_the_first_is_current() -> None:
    new, old = _b64(), _b64()
    keys = parse_master_keys(f"new:{new}, old:{old}")
    assert [k for k, _ in keys] == ["new", "old"]
    assert Keyring(keys).current == "new"
    urlsafe = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    assert len(parse_master_keys(f"a:{urlsafe}")[0][1]) == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no master key"),
        (base64.b64encode(os.urandom(16)).decode(), "32 bytes"),
        ("not base64 !!", "base64"),
        ("a:" + base64.b64encode(os.urandom(32)).decode() + "," + base64.b64encode(os.urandom(32)).decode(), "id:base64"),
        ("bad id:" + base64.b64encode(os.urandom(32)).decode(), "key id"),
        ("a:" + base64.b64encode(os.urandom(32)).decode() + ",a:" + base64.b64encode(os.urandom(32)).decode(), "duplicate"),
    ],
)  # fmt: skip
def test_bad_master_keys_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(SecretError, match=message):
        parse_master_keys(text)


def test_the_keyring_comes_from_the_env_or_a_file_not_both(tmp_path: Path) -> None:
    assert load_keyring({}) is None
    inline = _b64()
    assert load_keyring({"KEYWAY_MASTER_KEY": inline}) is not None
    path = tmp_path / "master"
    path.write_text(f"m2:{_b64()}\nm1:{inline}\n")
    ring = load_keyring({"KEYWAY_MASTER_KEY_FILE": str(path)})
    assert ring is not None and ring.key_ids == ("m2", "m1")
    with pytest.raises(SecretError, match="not both"):
        load_keyring({"KEYWAY_MASTER_KEY": inline, "KEYWAY_MASTER_KEY_FILE": str(path)})
    with pytest.raises(SecretError, match="cannot read"):
        load_keyring({"KEYWAY_MASTER_KEY_FILE": str(tmp_path / "missing")})


def test_client_keys_are_random_urlsafe_and_hinted_by_their_last_four() -> None:
    keys = {new_client_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert re.fullmatch(r"kw-[A-Za-z0-9_-]{32}", key)
    key = new_client_key()
    assert key_hint(key) == "..." + key[-4:]
    assert key_hint("short") == "..."
