"""Master-key rotation: re-seal every upstream secret in Redis under the current master key.

Online: each record is rewritten by `config_write.lua` only if it still holds the text that was
read (compare-and-set), so an admin change made meanwhile is never overwritten; the record is
read again and re-sealed. The plaintext does not change, so no replica needs to reload, and the
version is not bumped. Old master keys keep opening records until `status` counts none on them.

Procedure: put the new key first in KEYWAY_MASTER_KEY on every replica (``new:...,old:...``),
restart them, run ``keyway secrets rotate``, check ``keyway secrets status``, then drop the old key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from gateway.control.merge import key_binding
from gateway.control.records import KeyRecord, decode_record, encode_record, split_key_field
from gateway.control.store import Change, ConfigStore
from gateway.secrets.keyring import Keyring, SecretError, sealed_key_id

__all__ = ["RotationReport", "SealedCensus", "census", "rotate"]

_ATTEMPTS = 8


@dataclass(slots=True)
class RotationReport:
    resealed: int = 0
    already_current: int = 0
    retried_after_concurrent_change: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SealedCensus:
    by_key_id: dict[str, int] = field(default_factory=dict)
    file_secrets: int = 0


def _sealed(raw: str | None) -> KeyRecord | None:
    if raw is None:
        return None
    try:
        rec = decode_record(raw)
    except msgspec.DecodeError:
        return None
    return rec if isinstance(rec, KeyRecord) else None


async def rotate(store: ConfigStore, keyring: Keyring) -> RotationReport:
    report = RotationReport()
    stored = await store.read_all()
    for name, first in stored.keys.items():
        provider, key_id = split_key_field(name)
        raw: str | None = first
        for _ in range(_ATTEMPTS):
            rec = _sealed(raw)
            if raw is None or rec is None or rec.secret is None:
                break
            try:
                sealed = keyring.reseal(rec.secret, key_binding(provider, key_id))
            except SecretError as exc:
                report.failed.append(f"{name}: {exc}")
                break
            if sealed is None:
                report.already_current += 1
                break
            new = msgspec.structs.replace(rec, secret=sealed)
            change = Change("keys", name, raw, encode_record(new))
            if await store.write([change], bump=False) is not None:
                report.resealed += 1
                break
            report.retried_after_concurrent_change += 1
            raw = await store.get("keys", name)
        else:
            report.failed.append(f"{name}: changed concurrently {_ATTEMPTS} times; run again")
    return report


async def census(store: ConfigStore) -> SealedCensus:
    """How many stored upstream secrets each master key id sealed."""
    result = SealedCensus()
    stored = await store.read_all()
    for raw in stored.keys.values():
        rec = _sealed(raw)
        if rec is None:
            continue
        if rec.secret is None:
            result.file_secrets += 1
            continue
        try:
            kid = sealed_key_id(rec.secret)
        except SecretError:
            kid = "(unreadable)"
        result.by_key_id[kid] = result.by_key_id.get(kid, 0) + 1
    return result
