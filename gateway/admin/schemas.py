"""The admin API's request and response bodies (input Structs refuse unknown fields)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.config import ProviderKind, Strategy

__all__ = [
    "ClientCreate",
    "ClientCreated",
    "ClientPatch",
    "ClientView",
    "ConfigStatus",
    "DeploymentInput",
    "KeyCreate",
    "KeyDetail",
    "KeyDisable",
    "KeyPatch",
    "KeyStateView",
    "KeyView",
    "ModelPut",
    "ModelUsageView",
    "ModelView",
    "ProviderCreate",
    "ProviderPatch",
    "ProviderView",
    "Revoked",
    "SecretReplace",
    "SecretsStatus",
    "UsageRowView",
    "UsageView",
]

Id = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="1-64 of A-Z a-z 0-9 . _ -")
]
Alias = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:@/+*-]{1,256}$")]
ModelName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:@/+-]{1,256}$")]
Secret = Annotated[
    str,
    Meta(pattern=r"^[\x21-\x7e]{8,4096}$", description="8-4096 printable ASCII characters"),
]
Limit = Annotated[int, Meta(ge=1, le=1_000_000_000)]
Concurrency = Annotated[
    int, Meta(ge=0, le=1_000_000, description="requests in flight per replica; 0 = no cap")
]
Weight = Annotated[int, Meta(ge=0, le=1_000_000)]
Seconds = Annotated[float, Meta(gt=0, le=3600)]
Usd = Annotated[float, Meta(gt=0, le=1_000_000_000)]
Url = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=2048,
        description="http(s)://host[:port][/path]: no credentials, query or fragment",
        # documented, not enforced here: gateway.control.url_policy has the final word
        extra_json_schema={
            "pattern": r"^https?://[A-Za-z0-9._~:\[\]-]+(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
        },
    ),
]
Version = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
RefusedFlag = Annotated[
    bool,
    Meta(
        description="Refused (403): private upstreams are allowed only by the config file or "
        "KEYWAY_ALLOW_PRIVATE_UPSTREAMS, never through the admin API"
    ),
]


class ProviderCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Id
    kind: ProviderKind
    base_url: Url
    timeout_s: Seconds = 60.0
    connect_timeout_s: Seconds = 5.0
    api_version: Version | None = None
    anthropic_version: Version = "2023-06-01"
    allow_private_upstreams: RefusedFlag | UnsetType = UNSET
    """Refused (403): private upstreams are allowed only by the config file or the environment
    (KEYWAY_ALLOW_PRIVATE_UPSTREAMS), never through the admin API."""


class ProviderPatch(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    kind: ProviderKind | UnsetType = UNSET
    base_url: Url | UnsetType = UNSET
    timeout_s: Seconds | UnsetType = UNSET
    connect_timeout_s: Seconds | UnsetType = UNSET
    api_version: Version | UnsetType | None = UNSET
    anthropic_version: Version | UnsetType = UNSET
    allow_private_upstreams: RefusedFlag | UnsetType = UNSET
    """Refused (403), as in ProviderCreate."""
    key_secrets: (
        Annotated[
            dict[Id, Secret],
            Meta(
                max_length=1000,
                description="key id -> secret; every key's, when base_url moves to another "
                "scheme, host or port not in KEYWAY_UPSTREAM_HOSTS_ALLOWED",
            ),
        ]
        | UnsetType
    ) = UNSET
    """Key id -> secret: replaces those keys' secrets with the change. Required for every key of
    the provider when base_url moves to another scheme, host or port, unless the new host is in
    KEYWAY_UPSTREAM_HOSTS_ALLOWED: the keys must not follow a base_url an admin key moved."""


class KeyCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: Id
    secret: Secret
    """The upstream API key: sealed with the master key before it reaches Redis."""
    rpm: Limit | None = None
    tpm: Limit | None = None
    max_concurrency: Limit | None = None
    weight: Weight = 1


class KeyPatch(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    rpm: Limit | UnsetType | None = UNSET
    tpm: Limit | UnsetType | None = UNSET
    max_concurrency: Limit | UnsetType | None = UNSET
    weight: Weight | UnsetType = UNSET


class SecretReplace(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    secret: Secret


class KeyDisable(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(max_length=200, pattern=r"^[\x20-\x7e]*$")] = ""


class DeploymentInput(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    provider: Id
    model: ModelName


class ModelPut(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    deployments: Annotated[list[DeploymentInput], Meta(min_length=1, max_length=32)]
    strategy: Strategy = "least-utilised"
    fallbacks: Annotated[list[Alias], Meta(max_length=16)] = []
    spread: bool = False
    """Spread requests over the deployments (drawn by key count) instead of trying them in order."""


class ClientCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: Id
    rpm: Limit | None = None
    tpm: Limit | None = None
    models: Annotated[list[Alias], Meta(min_length=1, max_length=256)] = msgspec.field(
        default_factory=lambda: ["*"]
    )
    budget_daily_usd: Usd | None = None
    budget_monthly_usd: Usd | None = None
    max_concurrency: Concurrency | None = None
    """Requests in flight at once on each replica; 0 = no cap, null = the routing default."""


class ClientPatch(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    rpm: Limit | UnsetType | None = UNSET
    tpm: Limit | UnsetType | None = UNSET
    models: Annotated[list[Alias], Meta(min_length=1, max_length=256)] | UnsetType = UNSET
    budget_daily_usd: Usd | UnsetType | None = UNSET
    budget_monthly_usd: Usd | UnsetType | None = UNSET
    max_concurrency: Concurrency | UnsetType | None = UNSET


# -- responses ------------------------------------------------------------------------------


class ProviderView(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    kind: str
    base_url: str
    timeout_s: float
    connect_timeout_s: float
    api_version: str | None
    anthropic_version: str
    keys: int
    origin: str
    """file | runtime | file+runtime: where the current definition comes from."""


class KeyView(msgspec.Struct, kw_only=True, frozen=True):
    provider: str
    id: str
    secret: str
    """Masked to its last four characters."""
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    weight: int
    origin: str
    disabled: str | None
    """Why the key is disabled (an operator, or the upstream's 401/403), or null."""


class KeyStateView(msgspec.Struct, kw_only=True, frozen=True):
    status: str
    """available | disabled | cooling_down | breaker_open | breaker_half_open"""
    in_flight: int
    requests_last_minute: int
    cooldown_until_ms: int | None
    breaker: str
    breaker_until_ms: int | None
    remaining_requests: int | None
    remaining_tokens: int | None
    remaining_reset_ms: int | None
    latency_ms: int | None
    """Moving average of the time to the upstream's first byte."""


class UsageRowView(msgspec.Struct, kw_only=True, frozen=True):
    start: str
    """UTC start of the bucket, ISO 8601."""
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    errors: int


class KeyDetail(msgspec.Struct, kw_only=True, frozen=True):
    key: KeyView
    state: KeyStateView
    usage_today: UsageRowView


class ModelView(msgspec.Struct, kw_only=True, frozen=True):
    alias: str
    deployments: list[DeploymentInput]
    strategy: str
    fallbacks: list[str]
    spread: bool
    origin: str


class ClientView(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    key_hint: str
    rpm: int | None
    tpm: int | None
    models: list[str]
    budget_daily_usd: float | None
    budget_monthly_usd: float | None
    max_concurrency: int | None
    """Requests in flight at once on each replica; 0 = no cap, null = the routing default."""
    origin: str
    created_ms: int


class ClientCreated(msgspec.Struct, kw_only=True, frozen=True):
    client: ClientView
    key: str
    """The client key in plaintext: shown this once, then known only by its digest."""


class Revoked(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    revoked: bool = True


class UsageView(msgspec.Struct, kw_only=True, frozen=True):
    subject: str
    period: str
    rows: list[UsageRowView]
    total: UsageRowView


class ModelUsageView(msgspec.Struct, kw_only=True, frozen=True):
    provider: str
    model: str
    period: str
    rows: list[UsageRowView]
    total: UsageRowView


class ConfigStatus(msgspec.Struct, kw_only=True, frozen=True):
    version: int
    """The runtime config version this replica serves."""
    stored_version: int
    """The version in Redis now (ahead of `version` only for the blink of a reload)."""
    providers: int
    keys: int
    models: int
    clients: int
    problems: list[str]
    """Runtime records left out of the snapshot, and why."""


class SecretsStatus(msgspec.Struct, kw_only=True, frozen=True):
    current_key_id: str | None
    configured_key_ids: list[str]
    sealed_by_key_id: dict[str, int]
    """Upstream secrets in Redis per master key id."""
    file_secrets: int
    """Runtime key records whose secret the config file gives (nothing sealed)."""
    removable_key_ids: list[str]
    """Configured master keys no record uses any more: safe to remove."""
    missing_key_ids: list[str]
    """Master key ids that sealed records but are not configured here."""
