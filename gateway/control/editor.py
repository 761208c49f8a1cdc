"""ConfigEditor: validated, compare-and-set changes to the runtime config records.

Each operation reads the records it changes, checks the change against the merged view
(references, URL policy, existence), writes every record it touches in one `config_write.lua` call
guarded by the values it read, then reloads this replica's snapshot before returning: the change
is live here at once, and on every other replica as soon as its watcher hears the announcement.

Moving a provider's base_url to another origin (scheme, host or port) would send its keys'
secrets there on the next request, so whoever holds an admin key could collect them. Such a move
needs the secret of every key of the provider in the same change (sealed and written with it),
unless the new host is in `server.upstream_hosts_allowed` (KEYWAY_UPSTREAM_HOSTS_ALLOWED).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from gateway.config import ProviderConfig
from gateway.control.merge import Snapshot, key_binding
from gateway.control.records import (
    ClientRecord,
    Deleted,
    KeyRecord,
    Kind,
    ModelRecord,
    ProviderRecord,
    Record,
    decode_record,
    encode_record,
    key_field,
)
from gateway.control.store import ABSENT, ANY, Change
from gateway.control.sync import ConfigSync
from gateway.control.url_policy import UnsafeUpstream, check_base_url, host_of, origin_of
from gateway.secrets.client_keys import key_hint, new_client_key

__all__ = ["ConfigEditor", "EditError", "ProviderMove"]

_R = TypeVar("_R")


class EditError(Exception):
    """A change refused: `status` is the HTTP status (400, 404, 409, 503), `message` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class ProviderMove:
    """A base_url change to another origin, for the audit line."""

    old: str
    """`scheme://host:port` before."""
    new: str
    secrets_replaced: tuple[str, ...]
    """The key ids whose secrets came with the change (empty: the new host is allow-listed)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _guard(raw: str | None) -> str:
    return ABSENT if raw is None else raw


class ConfigEditor:
    """The operations of the admin API on providers, upstream keys, model aliases and clients."""

    def __init__(self, sync: ConfigSync) -> None:
        self.sync = sync
        self.store = sync.store

    async def fresh(self) -> Snapshot:
        snapshot = await self.sync.check()
        if snapshot is None:
            raise EditError(503, "the runtime config is not loaded yet; retry shortly")
        return snapshot

    async def _current(self, kind: Kind, name: str, want: type[_R]) -> tuple[str | None, _R | None]:
        """The stored text and its record (None when absent or a tombstone)."""
        raw = await self.store.get(kind, name)
        if raw is None:
            return None, None
        try:
            rec: Record = decode_record(raw)
        except msgspec.DecodeError:
            return raw, None
        return raw, rec if isinstance(rec, want) else None

    async def _commit(self, changes: list[Change]) -> int:
        version = await self.store.write(changes)
        if version is None:
            raise EditError(409, "changed concurrently by another operator; read it and retry")
        await self.sync.refresh()
        return version

    # -- providers ----------------------------------------------------------------------------

    def _check_provider(self, rec: ProviderRecord) -> ProviderRecord:
        if rec.kind == "azure-openai" and not rec.api_version:
            raise EditError(400, "api_version: required for kind azure-openai")
        try:
            url = check_base_url(rec.base_url, allow_private=self.sync.allow_private_upstreams)
        except UnsafeUpstream as exc:
            raise EditError(400, str(exc)) from None
        return msgspec.structs.replace(rec, base_url=url, updated_ms=_now_ms())

    async def create_provider(self, name: str, rec: ProviderRecord) -> int:
        snapshot = await self.fresh()
        if name in snapshot.config.providers:
            raise EditError(409, f"provider {name!r} already exists")
        raw, _ = await self._current("providers", name, ProviderRecord)
        new = self._check_provider(rec)
        return await self._commit([Change("providers", name, _guard(raw), encode_record(new))])

    async def update_provider(
        self, name: str, patch: Mapping[str, Any], key_secrets: Mapping[str, str] | None = None
    ) -> ProviderMove | None:
        """Change a provider's settings; the move of its base_url to another origin, if any.

        `key_secrets` (key id -> secret) replaces those keys' secrets in the same write; a move
        to a host not allow-listed needs one for every key of the provider (else 403).
        """
        snapshot = await self.fresh()
        current = snapshot.config.providers.get(name)
        if current is None:
            raise EditError(404, f"provider {name!r} does not exist")
        raw, rec = await self._current("providers", name, ProviderRecord)
        base = rec or _provider_record(current)
        try:
            new = self._check_provider(msgspec.structs.replace(base, **patch))
        except TypeError as exc:
            raise EditError(400, str(exc)) from None
        secrets = dict(key_secrets or {})
        key_ids = [k.id for k in current.keys]
        unknown = sorted(set(secrets) - set(key_ids))
        if unknown:
            raise EditError(400, f"key_secrets: provider {name!r} has no key {unknown[0]!r}")
        old_origin, new_origin = origin_of(current.base_url), origin_of(new.base_url)
        moved = old_origin != new_origin
        if moved and host_of(new.base_url) not in self.sync.upstream_hosts_allowed:
            missing = [k for k in key_ids if k not in secrets]
            if missing:
                raise EditError(
                    403,
                    f"moving provider {name!r} from {old_origin} to {new_origin} sends its keys "
                    f"there: give the secret of every key in key_secrets (missing: "
                    f"{', '.join(missing)}), or allow the host in KEYWAY_UPSTREAM_HOSTS_ALLOWED",
                )
        changes = [Change("providers", name, _guard(raw), encode_record(new))]
        for key_id in key_ids:
            if key_id in secrets:
                key_raw, key_rec = await self._key(name, key_id)
                sealed = self._seal(name, key_id, secrets[key_id])
                updated = msgspec.structs.replace(key_rec, secret=sealed, updated_ms=_now_ms())
                changes.append(
                    Change("keys", key_field(name, key_id), _guard(key_raw), encode_record(updated))
                )
        await self._commit(changes)
        if not moved:
            return None
        return ProviderMove(old_origin, new_origin, tuple(k for k in key_ids if k in secrets))

    async def delete_provider(self, name: str) -> int:
        snapshot = await self.fresh()
        provider = snapshot.config.providers.get(name)
        if provider is None:
            raise EditError(404, f"provider {name!r} does not exist")
        users = [a for a, m in snapshot.config.models.items()
                 if any(d.provider == name for d in m.deployments)]  # fmt: skip
        if users:
            raise EditError(
                409, f"provider {name!r} is used by model aliases {users}; change them first"
            )
        raw, _ = await self._current("providers", name, ProviderRecord)
        tomb = encode_record(Deleted(at_ms=_now_ms()))
        changes = [Change("providers", name, _guard(raw), tomb)]
        changes += [Change("keys", key_field(name, k.id), ANY, tomb) for k in provider.keys]
        return await self._commit(changes)

    # -- upstream keys ------------------------------------------------------------------------

    def _provider(self, snapshot: Snapshot, provider: str) -> ProviderConfig:
        found = snapshot.config.providers.get(provider)
        if found is None:
            raise EditError(404, f"provider {provider!r} does not exist")
        return found

    def _seal(self, provider: str, key_id: str, secret: str) -> str:
        if self.sync.keyring is None:
            raise EditError(
                409, "no master key: set KEYWAY_MASTER_KEY (or _FILE) to store upstream secrets"
            )
        return self.sync.keyring.seal(secret, key_binding(provider, key_id))

    async def _key(self, provider: str, key_id: str) -> tuple[str | None, KeyRecord]:
        """The stored text and the key's current definition (runtime record or file entry)."""
        snapshot = await self.fresh()
        self._provider(snapshot, provider)
        raw, rec = await self._current("keys", key_field(provider, key_id), KeyRecord)
        if rec is not None:
            return raw, rec
        file_provider = self.sync.base.config.providers.get(provider)
        file_key = next(
            (k for k in (file_provider.keys if file_provider else []) if k.id == key_id), None
        )
        tombstoned = raw is not None
        if file_key is None or tombstoned:
            raise EditError(404, f"key {provider}/{key_id} does not exist")
        return raw, KeyRecord(rpm=file_key.rpm, tpm=file_key.tpm,
                              max_concurrency=file_key.max_concurrency, weight=file_key.weight)  # fmt: skip

    async def add_key(
        self, provider: str, key_id: str, secret: str, limits: Mapping[str, Any]
    ) -> int:
        snapshot = await self.fresh()
        pool = self._provider(snapshot, provider)
        if any(k.id == key_id for k in pool.keys):
            raise EditError(409, f"key {provider}/{key_id} already exists")
        name = key_field(provider, key_id)
        raw, _ = await self._current("keys", name, KeyRecord)
        now = _now_ms()
        rec = KeyRecord(
            secret=self._seal(provider, key_id, secret), created_ms=now, updated_ms=now, **limits
        )
        return await self._commit([Change("keys", name, _guard(raw), encode_record(rec))])

    async def update_key(self, provider: str, key_id: str, patch: Mapping[str, Any]) -> int:
        raw, rec = await self._key(provider, key_id)
        new = msgspec.structs.replace(rec, updated_ms=_now_ms(), **patch)
        name = key_field(provider, key_id)
        return await self._commit([Change("keys", name, _guard(raw), encode_record(new))])

    async def replace_secret(self, provider: str, key_id: str, secret: str) -> int:
        raw, rec = await self._key(provider, key_id)
        sealed = self._seal(provider, key_id, secret)
        new = msgspec.structs.replace(rec, secret=sealed, updated_ms=_now_ms())
        name = key_field(provider, key_id)
        return await self._commit([Change("keys", name, _guard(raw), encode_record(new))])

    async def delete_key(self, provider: str, key_id: str) -> int:
        raw, _ = await self._key(provider, key_id)
        tomb = encode_record(Deleted(at_ms=_now_ms()))
        return await self._commit([Change("keys", key_field(provider, key_id), _guard(raw), tomb)])

    async def set_key_disabled(
        self, provider: str, key_id: str, disabled: bool, reason: str
    ) -> bool:
        snapshot = await self.fresh()
        pool = snapshot.table.pools.get(provider)
        if pool is None or key_id not in pool.by_id:
            raise EditError(404, f"key {provider}/{key_id} does not exist")
        return await self.store.set_key_disabled(provider, key_id, disabled, reason)

    # -- model aliases ------------------------------------------------------------------------

    async def put_model(self, alias: str, rec: ModelRecord) -> bool:
        """Create or replace; True when it was created."""
        snapshot = await self.fresh()
        for i, d in enumerate(rec.deployments):
            if d.provider not in snapshot.config.providers:
                raise EditError(400, f"deployments[{i}].provider: unknown provider {d.provider!r}")
        for i, f in enumerate(rec.fallbacks):
            if f == alias:
                raise EditError(400, f"fallbacks[{i}]: an alias cannot fall back to itself")
            if f not in snapshot.config.models:
                raise EditError(400, f"fallbacks[{i}]: unknown model alias {f!r}")
        raw, _ = await self._current("models", alias, ModelRecord)
        created = alias not in snapshot.config.models
        new = msgspec.structs.replace(rec, updated_ms=_now_ms())
        await self._commit([Change("models", alias, _guard(raw), encode_record(new))])
        return created

    async def delete_model(self, alias: str) -> int:
        snapshot = await self.fresh()
        if alias not in snapshot.config.models:
            raise EditError(404, f"model alias {alias!r} does not exist")
        users = [
            a for a, m in snapshot.config.models.items() if alias in m.fallbacks and a != alias
        ]
        if users:
            raise EditError(
                409, f"model alias {alias!r} is a fallback of {users}; change them first"
            )
        raw, _ = await self._current("models", alias, ModelRecord)
        tomb = encode_record(Deleted(at_ms=_now_ms()))
        return await self._commit([Change("models", alias, _guard(raw), tomb)])

    # -- client keys --------------------------------------------------------------------------

    async def create_client(self, client_id: str, limits: Mapping[str, Any]) -> str:
        """The new key's plaintext: returned once, stored only as its digest."""
        if not self.sync.client_key_secret_set and not self.store.state.handle.embedded:
            raise EditError(
                409,
                "set KEYWAY_CLIENT_KEY_SECRET (the same on every replica) to create client keys",
            )
        snapshot = await self.fresh()
        if client_id in snapshot.client_specs:
            raise EditError(409, f"client {client_id!r} already exists")
        raw, rec = await self._current("clients", client_id, ClientRecord)
        if rec is not None:  # a live record the merge left out (e.g. an unreadable digest)
            raise EditError(409, f"client {client_id!r} already exists")
        plaintext = new_client_key()
        now = _now_ms()
        new = ClientRecord(
            digest=self.sync.gw.clients.digest(plaintext).hex(),
            hint=key_hint(plaintext),
            created_ms=now,
            updated_ms=now,
            **limits,
        )
        await self._commit([Change("clients", client_id, _guard(raw), encode_record(new))])
        return plaintext

    async def update_client(self, client_id: str, patch: Mapping[str, Any]) -> int:
        snapshot = await self.fresh()
        spec = snapshot.client_specs.get(client_id)
        if spec is None:
            raise EditError(404, f"client {client_id!r} does not exist")
        raw, rec = await self._current("clients", client_id, ClientRecord)
        base = rec or ClientRecord(
            rpm=spec.rpm, tpm=spec.tpm, models=list(spec.models),
            budget_daily_usd=spec.budget_daily_usd, budget_monthly_usd=spec.budget_monthly_usd,
            max_concurrency=spec.max_concurrency,
        )  # fmt: skip
        new = msgspec.structs.replace(base, updated_ms=_now_ms(), **patch)
        return await self._commit([Change("clients", client_id, _guard(raw), encode_record(new))])

    async def revoke_client(self, client_id: str) -> int:
        snapshot = await self.fresh()
        if client_id not in snapshot.client_specs:
            raise EditError(404, f"client {client_id!r} does not exist")
        raw, _ = await self._current("clients", client_id, ClientRecord)
        tomb = encode_record(Deleted(at_ms=_now_ms()))
        return await self._commit([Change("clients", client_id, _guard(raw), tomb)])


def _provider_record(p: ProviderConfig) -> ProviderRecord:
    return ProviderRecord(
        kind=p.kind,
        base_url=p.base_url,
        timeout_s=p.timeout_s,
        connect_timeout_s=p.connect_timeout_s,
        api_version=p.api_version,
        anthropic_version=p.anthropic_version,
    )
