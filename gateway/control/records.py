"""The runtime config records kept in Redis, and how they are encoded there.

Four hashes under one hash tag, ``<prefix>:{cfg}:providers|keys|models|clients``, map an id
(``<provider>/<key id>`` for keys) to one JSON record. A record either defines the object in full
or is a `Deleted` tombstone, which hides an object the config file defines. Upstream secrets are
stored sealed (`gateway.secrets`), client keys as hex HMAC digests: nothing here is plaintext.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.config import DeploymentConfig, ProviderKind, Strategy

__all__ = [
    "KINDS",
    "ClientRecord",
    "Deleted",
    "KeyRecord",
    "Kind",
    "ModelRecord",
    "ProviderRecord",
    "Record",
    "StoredConfig",
    "decode_record",
    "encode_record",
    "key_field",
    "split_key_field",
]

Kind = Literal["providers", "keys", "models", "clients"]
KINDS: tuple[Kind, ...] = ("providers", "keys", "models", "clients")


class Deleted(msgspec.Struct, kw_only=True, frozen=True, tag="deleted"):
    """A tombstone: the object is gone, even if the config file defines it."""

    at_ms: int


class ProviderRecord(msgspec.Struct, kw_only=True, frozen=True, tag="provider"):
    kind: ProviderKind
    base_url: str
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    api_version: str | None = None
    anthropic_version: str = "2023-06-01"
    updated_ms: int = 0
    # an `allow_private_upstreams` written by earlier versions is ignored when read: only the
    # config file or the environment may allow private upstreams


class KeyRecord(msgspec.Struct, kw_only=True, frozen=True, tag="key"):
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    weight: int = 1
    secret: str | None = None
    """The sealed secret; None = the secret the config file gives this key."""
    created_ms: int = 0
    updated_ms: int = 0


class ModelRecord(msgspec.Struct, kw_only=True, frozen=True, tag="model"):
    deployments: list[DeploymentConfig]
    strategy: Strategy = "least-utilised"
    fallbacks: list[str] = []
    spread: bool = False
    updated_ms: int = 0


class ClientRecord(msgspec.Struct, kw_only=True, frozen=True, tag="client"):
    rpm: int | None = None
    tpm: int | None = None
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    max_concurrency: int | None = None
    """Requests in flight at once per replica; 0 = no cap, None = the routing default."""
    digest: str | None = None
    """Hex HMAC-SHA-256 of the key; None = the key the config file gives this client."""
    hint: str | None = None
    """The key's last four characters, for listings."""
    created_ms: int = 0
    updated_ms: int = 0


Record = ProviderRecord | KeyRecord | ModelRecord | ClientRecord | Deleted

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Record] = msgspec.json.Decoder(Record)


def encode_record(record: Record) -> str:
    return _encoder.encode(record).decode()


def decode_record(raw: str) -> Record:
    """Raises `msgspec.DecodeError` for a record this version cannot read."""
    return _decoder.decode(raw)


def key_field(provider: str, key_id: str) -> str:
    return f"{provider}/{key_id}"


def split_key_field(field: str) -> tuple[str, str]:
    provider, _, key_id = field.rpartition("/")
    return provider, key_id


class StoredConfig(msgspec.Struct, kw_only=True, frozen=True):
    """Everything the four hashes held at one version, still encoded."""

    version: int
    providers: dict[str, str] = {}
    keys: dict[str, str] = {}
    models: dict[str, str] = {}
    clients: dict[str, str] = {}

    def of(self, kind: Kind) -> dict[str, str]:
        table: dict[str, str] = getattr(self, kind)
        return table
