"""Merge the config file with the runtime records of Redis into one snapshot for the hot path.

The rule, per object (provider, upstream key, model alias, client key), by id:

    a runtime record (created or changed through the admin API)  wins over
    a runtime tombstone (deleted or revoked through the admin API), which hides
    the config file's entry.

So the file is a baseline that never clobbers a runtime change; `keyway serve --config-overwrite`
removes the runtime records of the ids the file defines before the first merge. A record that
cannot be used (unreadable, secret that does not open, reference to a missing object) is left out
and reported in `Snapshot.problems`; the rest of the snapshot still applies.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import msgspec

from gateway.clients import Client, make_client
from gateway.config import ClientConfig, Config, KeyConfig, ModelConfig, ProviderConfig
from gateway.config_load import ConfigError, resolve_secret
from gateway.control.records import (
    ClientRecord,
    Deleted,
    KeyRecord,
    Kind,
    ModelRecord,
    ProviderRecord,
    Record,
    StoredConfig,
    decode_record,
    key_field,
)
from gateway.routing.table import RouteTable
from gateway.secrets.client_keys import key_hint
from gateway.secrets.keyring import Keyring, SecretError

__all__ = ["ClientSpec", "FileBaseline", "Origin", "Snapshot", "key_binding", "merge"]

Origin = Literal["file", "runtime", "file+runtime"]
_R = TypeVar("_R")


def key_binding(provider: str, key_id: str) -> str:
    """The associated data a sealed upstream secret is bound to."""
    return f"upstream-key:{provider}/{key_id}"


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What a listing shows of a client key (never the key or its digest)."""

    id: str
    rpm: int | None
    tpm: int | None
    models: tuple[str, ...]
    budget_daily_usd: float | None
    budget_monthly_usd: float | None
    hint: str
    origin: Origin
    created_ms: int
    max_concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class FileBaseline:
    """The config file with its client keys already digested (done once per process)."""

    config: Config
    client_digests: Mapping[str, bytes]
    client_hints: Mapping[str, str]

    @classmethod
    def build(
        cls, cfg: Config, digest: Callable[[str], bytes], env: Mapping[str, str]
    ) -> FileBaseline:
        digests: dict[str, bytes] = {}
        hints: dict[str, str] = {}
        for i, c in enumerate(cfg.clients):
            plain = resolve_secret(c.key, f"clients[{i}].key", env)
            digests[c.id] = digest(plain)
            hints[c.id] = key_hint(plain)
        return cls(config=cfg, client_digests=digests, client_hints=hints)


@dataclass(frozen=True)
class Snapshot:
    """One merged view: what every request of this replica routes and authenticates by."""

    version: int
    config: Config
    """Providers and models merged; upstream secrets only as `env:` references."""
    table: RouteTable
    clients: tuple[Client, ...]
    client_specs: Mapping[str, ClientSpec]
    origins: Mapping[tuple[Kind, str], Origin]
    problems: tuple[str, ...]


class _Merger:
    def __init__(self, base: FileBaseline, stored: StoredConfig, keyring: Keyring | None) -> None:
        self.base = base
        self.stored = stored
        self.keyring = keyring
        self.problems: list[str] = []
        self.origins: dict[tuple[Kind, str], Origin] = {}
        self.sealed: dict[str, str] = {}

    def record(self, kind: Kind, name: str, want: type[_R]) -> _R | Deleted | None:
        raw = self.stored.of(kind).get(name)
        if raw is None:
            return None
        try:
            rec: Record = decode_record(raw)
        except msgspec.DecodeError:
            self.problems.append(f"{kind} {name}: unreadable record ignored")
            return None
        if isinstance(rec, Deleted | want):
            return rec
        self.problems.append(f"{kind} {name}: record of another kind ignored")
        return None

    def ordered(self, kind: Kind, in_file: list[str], created: Callable[[str], int]) -> list[str]:
        known = set(in_file)
        extra = [n for n in self.stored.of(kind) if n not in known]
        return in_file + sorted(extra, key=lambda n: (created(n), n))

    def origin(self, kind: Kind, name: str, in_file: bool, runtime: bool) -> None:
        self.origins[(kind, name)] = (
            "file+runtime" if in_file and runtime else "runtime" if runtime else "file"
        )

    def providers(self) -> dict[str, ProviderConfig]:
        file = self.base.config.providers
        out: dict[str, ProviderConfig] = {}
        for name in self.ordered("providers", list(file), lambda _: 0):
            rec = self.record("providers", name, ProviderRecord)
            if isinstance(rec, Deleted):
                continue
            if isinstance(rec, ProviderRecord):
                settings = ProviderConfig(
                    kind=rec.kind,
                    base_url=rec.base_url,
                    keys=[],
                    timeout_s=rec.timeout_s,
                    connect_timeout_s=rec.connect_timeout_s,
                    api_version=rec.api_version,
                    anthropic_version=rec.anthropic_version,
                )
            elif name in file:
                settings = file[name]
            else:
                continue
            self.origin("providers", name, name in file, rec is not None)
            out[name] = msgspec.structs.replace(settings, keys=self.keys(name))
        return out

    def keys(self, provider: str) -> list[KeyConfig]:
        file_provider = self.base.config.providers.get(provider)
        file_keys = {k.id: k for k in (file_provider.keys if file_provider else [])}
        prefix = provider + "/"
        runtime_ids = sorted(
            (f[len(prefix) :] for f in self.stored.keys if f.startswith(prefix)),
            key=lambda kid: (self._created("keys", key_field(provider, kid)), kid),
        )
        ids = list(file_keys) + [k for k in runtime_ids if k not in file_keys]
        out: list[KeyConfig] = []
        for kid in ids:
            name = key_field(provider, kid)
            rec = self.record("keys", name, KeyRecord)
            if isinstance(rec, Deleted):
                continue
            if rec is None:
                if kid in file_keys:
                    self.origin("keys", name, True, False)
                    out.append(file_keys[kid])
                continue
            secret = self._secret(provider, kid, rec, file_keys.get(kid))
            if secret is None:
                continue
            self.origin("keys", name, kid in file_keys, True)
            out.append(
                KeyConfig(
                    id=kid,
                    secret=secret,
                    rpm=rec.rpm,
                    tpm=rec.tpm,
                    max_concurrency=rec.max_concurrency,
                    weight=rec.weight,
                )
            )
        return out

    def _created(self, kind: Kind, name: str) -> int:
        raw = self.stored.of(kind).get(name)
        try:
            rec = decode_record(raw) if raw else None
        except msgspec.DecodeError:
            return 0
        return int(getattr(rec, "created_ms", 0))

    def _secret(
        self, provider: str, kid: str, rec: KeyRecord, file_key: KeyConfig | None
    ) -> str | None:
        where = f"keys {provider}/{kid}"
        if rec.secret is None:
            if file_key is None:
                self.problems.append(f"{where}: no secret (neither sealed nor in the file)")
                return None
            return file_key.secret
        if self.keyring is None:
            self.problems.append(f"{where}: sealed secret, but no master key is configured")
            return None
        try:
            plain = self.keyring.open(rec.secret, key_binding(provider, kid))
        except SecretError as exc:
            self.problems.append(f"{where}: {exc}")
            return None
        ref = f"KW_SEALED_{len(self.sealed)}"
        self.sealed[ref] = plain
        return f"env:{ref}"

    def models(self, providers: Mapping[str, ProviderConfig]) -> dict[str, ModelConfig]:
        file = self.base.config.models
        found: dict[str, ModelConfig] = {}
        for alias in self.ordered("models", list(file), lambda _: 0):
            rec = self.record("models", alias, ModelRecord)
            if isinstance(rec, Deleted):
                continue
            if isinstance(rec, ModelRecord):
                model = ModelConfig(
                    deployments=rec.deployments,
                    strategy=rec.strategy,
                    fallbacks=rec.fallbacks,
                    spread=rec.spread,
                )
            elif alias in file:
                model = file[alias]
            else:
                continue
            self.origin("models", alias, alias in file, rec is not None)
            found[alias] = model
        out: dict[str, ModelConfig] = {}
        for alias, model in found.items():
            deployments = [d for d in model.deployments if d.provider in providers]
            fallbacks = [f for f in model.fallbacks if f in found and f != alias]
            for d in model.deployments:
                if d.provider not in providers:
                    self.problems.append(f"models {alias}: provider {d.provider!r} is missing")
            for f in model.fallbacks:
                if f not in found:
                    self.problems.append(f"models {alias}: fallback {f!r} is missing")
            out[alias] = msgspec.structs.replace(
                model, deployments=deployments, fallbacks=fallbacks
            )
        return out

    def clients(self) -> tuple[list[Client], dict[str, ClientSpec]]:
        file = {c.id: c for c in self.base.config.clients}
        clients: list[Client] = []
        specs: dict[str, ClientSpec] = {}
        seen: dict[bytes, str] = {}
        for cid in self.ordered("clients", list(file), lambda n: self._created("clients", n)):
            rec = self.record("clients", cid, ClientRecord)
            if isinstance(rec, Deleted):
                continue
            spec = self._client_spec(cid, rec, file.get(cid))
            if spec is None:
                continue
            digest, limits = spec
            if digest in seen:
                self.problems.append(f"clients {cid}: same key as {seen[digest]!r}; ignored")
                continue
            seen[digest] = cid
            specs[cid] = limits
            clients.append(
                make_client(
                    cid,
                    digest,
                    rpm=limits.rpm,
                    tpm=limits.tpm,
                    models=limits.models,
                    budget_daily_usd=limits.budget_daily_usd,
                    budget_monthly_usd=limits.budget_monthly_usd,
                    max_concurrency=limits.max_concurrency,
                )
            )
        return clients, specs

    def _client_spec(
        self, cid: str, rec: ClientRecord | None, file: ClientConfig | None
    ) -> tuple[bytes, ClientSpec] | None:
        if rec is None:
            if file is None:
                return None
            self.origin("clients", cid, True, False)
            return self.base.client_digests[cid], ClientSpec(
                id=cid, rpm=file.rpm, tpm=file.tpm, models=tuple(file.models),
                budget_daily_usd=file.budget_daily_usd, budget_monthly_usd=file.budget_monthly_usd,
                hint=self.base.client_hints[cid], origin="file", created_ms=0,
                max_concurrency=file.max_concurrency,
            )  # fmt: skip
        if rec.digest is not None:
            try:
                digest = bytes.fromhex(rec.digest)
            except ValueError:
                self.problems.append(f"clients {cid}: unreadable digest")
                return None
            hint = rec.hint or "..."
        elif file is not None:
            digest, hint = self.base.client_digests[cid], self.base.client_hints[cid]
        else:
            self.problems.append(f"clients {cid}: no key (neither a digest nor in the file)")
            return None
        self.origin("clients", cid, file is not None, True)
        origin = self.origins[("clients", cid)]
        return digest, ClientSpec(
            id=cid, rpm=rec.rpm, tpm=rec.tpm, models=tuple(rec.models),
            budget_daily_usd=rec.budget_daily_usd, budget_monthly_usd=rec.budget_monthly_usd,
            hint=hint, origin=origin, created_ms=rec.created_ms,
            max_concurrency=rec.max_concurrency,
        )  # fmt: skip


def merge(
    base: FileBaseline,
    stored: StoredConfig,
    keyring: Keyring | None,
    env: Mapping[str, str],
) -> Snapshot:
    """The snapshot for `stored` over `base`; never raises for a bad record (see problems)."""
    m = _Merger(base, stored, keyring)
    providers = m.providers()
    models = m.models(providers)
    config = msgspec.structs.replace(base.config, providers=providers, models=models)
    lookup: Mapping[str, str] = ChainMap(m.sealed, dict(env))
    try:
        table = RouteTable(config, lookup)
    except ConfigError as exc:  # a file key whose env var vanished: the file check missed it
        raise ConfigError(f"merged config: {exc}") from None
    clients, specs = m.clients()
    return Snapshot(
        version=stored.version,
        config=config,
        table=table,
        clients=tuple(clients),
        client_specs=specs,
        origins=m.origins,
        problems=tuple(m.problems),
    )
