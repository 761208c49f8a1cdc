"""The config file's schema: what an operator may write in `keyway.yaml`, with its defaults.

Read once at start-up by `gateway.config_load`, then frozen. Field docstrings are the reference.
Every section forbids unknown fields: a typo stops start-up instead of being ignored.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = [
    "BreakerConfig",
    "ClientConfig",
    "Config",
    "DeploymentConfig",
    "KeyConfig",
    "ModelConfig",
    "PriceConfig",
    "ProviderConfig",
    "ProviderKind",
    "RedisConfig",
    "RoutingConfig",
    "ServerConfig",
    "Strategy",
]

ProviderKind = Literal["openai", "anthropic", "openai-compatible", "azure-openai"]
Strategy = Literal["least-utilised", "weighted", "priority", "lowest-cost", "lowest-latency"]


class KeyConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: str
    """Stable id of the upstream key: shown in logs, metrics and headers instead of the secret."""
    secret: str
    """`env:NAME` (read from the environment at start-up) or the literal secret."""
    rpm: int | None = None
    """Requests per 60 s window the upstream allows this key; none = unlimited."""
    tpm: int | None = None
    """Tokens (prompt + completion) per 60 s window; none = unlimited."""
    max_concurrency: int | None = None
    """Requests in flight at once on this key, across all replicas."""
    weight: int = 1
    """Share of traffic under the `weighted` strategy."""


class ProviderConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    kind: ProviderKind
    base_url: str
    """e.g. https://api.openai.com/v1 (OpenAI kinds) or https://api.anthropic.com (Anthropic)."""
    keys: list[KeyConfig]
    timeout_s: float = 60.0
    """Longest wait for the response headers and between two streamed chunks."""
    connect_timeout_s: float = 5.0
    api_version: str | None = None
    """Azure OpenAI `api-version` query parameter."""
    anthropic_version: str = "2023-06-01"
    """`anthropic-version` header sent when the client did not send one."""


class DeploymentConfig(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    # omit_defaults: runtime records (`gateway.control.records`) embed this struct, and a replica
    # of the previous version, which forbids unknown fields, must still read the ones that leave
    # `max_output_tokens` unset
    provider: str
    model: str
    """The model name the provider knows (an Azure deployment name for azure-openai)."""
    max_output_tokens: int | None = None
    """The most output tokens to ask this model for: a larger `max_tokens` (or
    `max_completion_tokens`, `max_output_tokens`) is lowered to it. None = the limit Keyway knows
    for the model's name (`gateway.translate.output_limits`), else no limit."""


class ModelConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    deployments: list[DeploymentConfig]
    strategy: Strategy = "least-utilised"
    fallbacks: list[str] = []
    """Aliases tried, in order, once every deployment of this alias failed or is exhausted."""
    spread: bool = False
    """Spread requests over this alias's deployments instead of trying them in order: each
    request starts at a deployment drawn by its pool's key count, then tries the others. Splits
    a pool too hot for one Redis shard: list its keys under several providers (same kind, base
    URL and model), each its own hash tag and so its own Cluster slot."""


class ClientConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: str
    key: str
    """`env:NAME` or the literal client key; only its HMAC digest is kept in memory."""
    rpm: int | None = None
    tpm: int | None = None
    models: list[str] = msgspec.field(default_factory=lambda: ["*"])
    """Aliases this key may call; `*` allows every alias."""
    budget_daily_usd: float | None = None
    budget_monthly_usd: float | None = None
    max_concurrency: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """Requests of this key in flight at once on each replica (worker process), counted in
    process: fleet-wide up to replicas x this. 0: no cap; none: `routing.client_max_concurrency`."""


class PriceConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    input: float
    """USD per million prompt tokens."""
    output: float
    """USD per million completion tokens."""


class RedisConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    url: str | None = None
    """redis://, rediss://, redis+cluster:// or redis+sentinel://; none = embedded store."""
    prefix: str = "kw"
    timeout_s: float = 0.5
    """Socket timeout of every Redis call."""
    retry_interval_s: float = 1.0
    """While Redis is unreachable, one call per interval tries it; the rest fail over at once."""


class ServerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int | None = None
    """Serve the admin API, /docs and /metrics on this port, off `port` (KEYWAY_ADMIN_PORT);
    None: everything on `port`. Every worker listens on both (gateway/server.py)."""
    admin_host: str | None = None
    """The admin port's listen address (KEYWAY_ADMIN_HOST); None: `host`."""
    workers: int = 1
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_body_bytes: int = 4 * 1024 * 1024
    """Requests above this size get 413."""
    shutdown_timeout_s: float = 600.0
    """How long in-flight requests and streams may run on after SIGTERM."""
    cors_origins: list[str] = []
    """Browser origins allowed to call Keyway (CORS), e.g. ["https://app.example.com"] or ["*"];
    empty: no CORS headers at all."""
    trusted_proxy_hops: int = 0
    """How many proxies in front of Keyway append to X-Forwarded-For (KEYWAY_TRUSTED_PROXY_HOPS):
    the admin API takes the client's address from that many entries from the right. 0: the peer
    address, and X-Forwarded-For is ignored."""
    allow_private_upstreams: bool = False
    """Allow cloud metadata, link-local, unspecified and multicast upstream addresses
    (KEYWAY_ALLOW_PRIVATE_UPSTREAMS=1). Only here or in the environment, never the admin API."""
    upstream_hosts_allowed: list[str] = []
    """Hosts the admin API may move a provider's base_url to without giving its keys' secrets
    again (KEYWAY_UPSTREAM_HOSTS_ALLOWED, comma-separated), e.g. ["api.openai.com"]."""


class BreakerConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    consecutive_failures: int = 5
    failure_rate_pct: int = 50
    min_requests: int = 20
    window_s: float = 60.0
    open_s: float = 5.0
    """First open period; doubles on each failed probe, up to `max_open_s`."""
    max_open_s: float = 300.0


class RoutingConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    max_attempts: int = 4
    """Upstream attempts per request, across keys, deployments and fallbacks."""
    deadline_s: float = 120.0
    """The whole request's budget: no new attempt starts after it, and an upstream exchange
    (pool wait, connect, headers, a JSON body) is cut when it passes; streams are bounded by
    `max_stream_s` instead."""
    lease_ttl_s: float = 600.0
    """A lease not settled by then (dead replica) is released by the next acquire; the owner of
    a running call renews its lease every third of this, so only a dead replica's expire."""
    max_stream_s: float = 3600.0
    """A stream still running after this long is cut (and settled with what it streamed)."""
    cooldown_s: float = 30.0
    """Cooldown of a key after a 429 without Retry-After (KEY_COOLDOWN_SECONDS)."""
    max_cooldown_s: float = 600.0
    default_max_tokens: int = 1024
    """Completion tokens reserved when the request does not say `max_tokens`."""
    degraded_budget_allowance_usd: float = 1.0
    """While Redis is away, a client with a budget may spend at most this much per worker
    process and per budget period (UTC day for a daily budget, UTC month for a monthly one),
    however many outages the period holds."""
    degraded_replicas: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Worker processes of the whole fleet (replicas x workers each) to assume while Redis is
    away: each takes 1/this of every client and key limit (rounded down). The count seen in the
    heartbeats is used when larger. None: a worker that never reached Redis has no share of any
    limit, so it refuses limited clients and keys until Redis answers."""
    degraded_settlement_queue: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    """Settlement batches held for Redis while it is away; past this the oldest are dropped,
    counted in `keyway_settlements_dropped_total` and logged once per outage."""
    usage_flush_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 1.0
    """How often each worker sends the usage it counted to Redis (one call per pool and client
    with traffic); a worker that dies loses at most this much usage (never limits or spend)."""
    usage_max_pending_groups: Annotated[int, msgspec.Meta(ge=1)] = 100_000
    """Usage field groups (a key and model, or a client and alias, per hour) a worker holds
    while Redis is away; past this the oldest batches are dropped, counted in
    `keyway_settlements_dropped_total{reason="usage"}` and logged once per outage."""
    client_max_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 250
    """Requests in flight at once per client key on each replica (worker process), for keys
    that set no `max_concurrency`; above it, 429 `client_concurrency`. 0: no cap. 250 is a
    quarter of a worker's upstream connection pool (1000): one client cannot take all of it."""
    breaker: BreakerConfig = BreakerConfig()


class Config(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    clients: list[ClientConfig] = []
    prices: dict[str, PriceConfig] = {}
    """USD per million tokens by upstream model or alias; `"*"` prices every other model."""
    redis: RedisConfig = RedisConfig()
    server: ServerConfig = ServerConfig()
    routing: RoutingConfig = RoutingConfig()
