"""What a run tests: two fake providers, Redis, N Keyway replicas and their config, haproxy.

The fake provider at 0 ms serves the throughput, streaming, overload and Redis-cost pools; a
second one answers after 50 ms. One generated config gives Keyway a model alias per pool:

- ``bench-0ms`` / ``bench-50ms``: the throughput pools (``--pool-keys`` keys each). By default
  they are *limited* as production configs are: every key has an rpm and a tpm, and the client
  key has an rpm, a tpm, a daily and a monthly budget, and the model has a price, so every
  request runs the key windows, the client windows and the usage/spend accounting. The limits
  are far above anything the bench reaches, so nothing is ever refused. ``--unlimited`` gives
  keys and client no limits (the old configuration, which skips most of that work).
- ``bench-overload``: a few keys with a tight rpm.
- ``cost-limited-<n>`` / ``cost-unlimited-<n>``: pools of n keys for the Redis-cost comparison,
  called with the limited or the unlimited client key.

Every upstream secret ends in distinct 8 characters, which is how the fake provider's
``/_fake/stats`` names keys, so its counts map back to key ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loadtests.meters import tree
from loadtests.stack import Proc, Stack

__all__ = [
    "CLIENT_BUDGET_DAILY_USD",
    "CLIENT_BUDGET_MONTHLY_USD",
    "CLIENT_KEY",
    "DIRECT_KEY",
    "DIRECT_MODEL",
    "FREE_CLIENT_KEY",
    "KEY_RPM",
    "KEY_TPM",
    "PRICE",
    "Aliases",
    "CostPool",
    "Topology",
    "UpstreamKey",
    "cost_pools",
    "describe_limits",
    "overload_pool",
    "render_config",
    "start_topology",
]

CLIENT_KEY = "sk-loadtest-client-0001"
"""The limited client key (rpm, tpm, daily and monthly budgets)."""

FREE_CLIENT_KEY = "sk-loadtest-client-free"
"""The client key without any limit or budget (``--unlimited``, and the unlimited cost pools)."""

KEY_RPM = 10_000_000
KEY_TPM = 10_000_000_000
"""Limits of every key of a limited pool, and of the limited client: set, as in production,
but never reached by the bench."""
CLIENT_BUDGET_DAILY_USD = 1_000_000.0
CLIENT_BUDGET_MONTHLY_USD = 30_000_000.0
PRICE = (0.15, 0.60)
"""USD per million input / output tokens of the upstream model (so spend is accounted)."""

DIRECT_KEY = "sk-loadtest-00000900"
"""The upstream key the direct runs present to the fake provider."""

DIRECT_MODEL = "gpt-4o-mini"
"""The upstream model every alias points at; the direct runs ask for it by name."""


class Aliases:
    """Keyway model aliases, one per upstream pool."""

    INSTANT = "bench-0ms"
    SLOW = "bench-50ms"
    OVERLOAD = "bench-overload"


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    id: str
    secret: str
    rpm: int | None = None
    tpm: int | None = None

    @property
    def masked(self) -> str:
        """The name the fake provider's stats give this key (its last 8 characters)."""
        return self.secret[-8:]


def _keys(
    prefix: str, first: int, count: int, rpm: int | None = None, tpm: int | None = None
) -> list[UpstreamKey]:
    return [
        UpstreamKey(id=f"{prefix}{i + 1}", secret=f"sk-loadtest-{first + i:08d}", rpm=rpm, tpm=tpm)
        for i in range(count)
    ]


def _pool(prefix: str, first: int, count: int, *, limited: bool) -> list[UpstreamKey]:
    """`count` keys, each with the never-reached production-like limits if `limited`."""
    if limited:
        return _keys(prefix, first, count, rpm=KEY_RPM, tpm=KEY_TPM)
    return _keys(prefix, first, count)


# first secret number of each pool: the fake provider tells keys apart by their last 8
# characters, so no two pools on one fake provider may share a number
_FIRST_INSTANT = 1_000_001
_FIRST_SLOW = 2_000_001
_FIRST_OVERLOAD = 3_000_001
_FIRST_COST = 4_000_001
_COST_STRIDE = 100_000


@dataclass(frozen=True, slots=True)
class CostPool:
    """One pool of the Redis-cost comparison: an alias, its keys, the client key that calls it."""

    alias: str
    limited: bool
    keys: list[UpstreamKey]

    @property
    def client_key(self) -> str:
        return CLIENT_KEY if self.limited else FREE_CLIENT_KEY

    @property
    def label(self) -> str:
        return f"{'limited' if self.limited else 'unlimited'}, {len(self.keys)} keys"


def cost_pools(sizes: tuple[int, ...]) -> list[CostPool]:
    """Limited and unlimited pools of each size, limited first, smaller first."""
    pools = []
    n = 0
    for limited in (True, False):
        for size in sizes:
            name = "limited" if limited else "unlimited"
            first = _FIRST_COST + n * _COST_STRIDE
            pools.append(
                CostPool(
                    alias=f"cost-{name}-{size}",
                    limited=limited,
                    keys=_pool(f"c{n}-", first, size, limited=limited),
                )
            )
            n += 1
    return pools


def describe_limits(limited: bool) -> str:
    """One line for the report: what the throughput pools and the client key are limited to."""
    if not limited:
        return (
            "unlimited (--unlimited): keys and client key without rpm, tpm or budgets, "
            "no price (most of the per-request Redis work is skipped)"
        )
    return (
        f"limited: every key rpm {KEY_RPM:,} and tpm {KEY_TPM:,}; the client key rpm "
        f"{KEY_RPM:,}, tpm {KEY_TPM:,}, daily budget ${CLIENT_BUDGET_DAILY_USD:,.0f}, monthly "
        f"${CLIENT_BUDGET_MONTHLY_USD:,.0f}; the aliases priced ${PRICE[0]} / ${PRICE[1]} per "
        "million input / output tokens (limits never reached: nothing is refused)"
    )


def _provider(name: str, url: str, keys: list[UpstreamKey]) -> str:
    lines = [
        f"  {name}:",
        "    kind: openai-compatible",
        f"    base_url: {url}/v1",
        "    timeout_s: 30",
        "    keys:",
    ]
    for k in keys:
        rpm = f", rpm: {k.rpm}" if k.rpm is not None else ""
        tpm = f", tpm: {k.tpm}" if k.tpm is not None else ""
        lines.append(f"      - {{id: {k.id}, secret: {k.secret}{rpm}{tpm}}}")
    return "\n".join(lines)


def render_config(
    instant_url: str,
    slow_url: str,
    *,
    overload_keys: list[UpstreamKey],
    pool_size: int = 4,
    limited: bool = True,
    costs: list[CostPool] | None = None,
) -> str:
    """The Keyway config of a run (``REDIS_URL`` comes from the environment)."""
    cost_list = costs or []
    pools: list[tuple[str, str, str, list[UpstreamKey]]] = [
        (Aliases.INSTANT, "instant", instant_url, instant_pool(pool_size, limited)),
        (Aliases.SLOW, "slow", slow_url, _pool("s", _FIRST_SLOW, pool_size, limited=limited)),
        (Aliases.OVERLOAD, "tight", instant_url, overload_keys),
        *((c.alias, c.alias, instant_url, c.keys) for c in cost_list),
    ]
    providers = "\n".join(_provider(name, url, keys) for _, name, url, keys in pools)
    aliases = "\n".join(
        f"  {alias}:\n    deployments:\n      - {{provider: {provider}, model: {DIRECT_MODEL}}}"
        for alias, provider, _, _ in pools
    )
    limited_client = (
        f'  - {{id: loadtest, key: {CLIENT_KEY}, models: ["*"], rpm: {KEY_RPM}, '
        f"tpm: {KEY_TPM}, budget_daily_usd: {CLIENT_BUDGET_DAILY_USD}, "
        f"budget_monthly_usd: {CLIENT_BUDGET_MONTHLY_USD}}}"
    )
    free_client = f'  - {{id: loadtest-free, key: {FREE_CLIENT_KEY}, models: ["*"]}}'
    # prices (by alias) make the settle account spend and let the budgets work; the unlimited
    # aliases keep none, as the old configuration had none
    priced = [alias for alias, _, _, _ in pools[:3] if limited]
    priced += [c.alias for c in cost_list if c.limited]
    prices = "".join(f"  {alias}: {{input: {PRICE[0]}, output: {PRICE[1]}}}\n" for alias in priced)
    prices = f"prices:\n{prices}" if prices else ""
    return f"""# generated by loadtests/run.py ({"limited" if limited else "unlimited"} throughput pools)
providers:
{providers}
models:
{aliases}
clients:
{limited_client}
{free_client}
{prices}server:
  log_level: warning
  shutdown_timeout_s: 5
"""


def instant_pool(pool_size: int, limited: bool) -> list[UpstreamKey]:
    """The keys behind ``bench-0ms`` (their ids and secrets, for the fake provider's counts)."""
    return _pool("i", _FIRST_INSTANT, pool_size, limited=limited)


@dataclass
class Topology:
    """The started processes of a run."""

    redis: Proc
    instant: Proc
    """The fake provider answering at once."""
    slow: Proc
    """The fake provider answering after 50 ms."""
    replicas: list[Proc]
    front: Proc
    """Where load for Keyway goes: haproxy, or the only replica."""
    overload_keys: list[UpstreamKey]
    workers: int
    limited: bool = True
    """The throughput pools and their client key have (never reached) limits."""
    pools: dict[str, list[UpstreamKey]] = field(default_factory=dict)
    """The keys behind each alias (the fake provider's counts per key give the fairness)."""
    costs: list[CostPool] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    @property
    def client_key(self) -> str:
        """The client key of the throughput, streaming and overload scenarios."""
        return CLIENT_KEY if self.limited else FREE_CLIENT_KEY

    def gateway_pids(self) -> list[int]:
        """Every process of every replica (Granian's supervisor and its workers)."""
        return [pid for replica in self.replicas for pid in tree(replica.pid)]


def start_topology(
    stack: Stack,
    *,
    replicas: int,
    workers: int,
    haproxy: bool,
    stream_chunks: int,
    overload_keys: list[UpstreamKey],
    pool_size: int = 4,
    limited: bool = True,
    costs: list[CostPool] | None = None,
) -> Topology:
    """Start Redis, both fake providers, the replicas (ready) and haproxy if asked."""
    redis = stack.start_redis()
    instant = stack.start_fake_provider("fake-0ms", ["--stream-chunks", str(stream_chunks)])
    slow = stack.start_fake_provider("fake-50ms", ["--latency-ms", "50"])
    config_path = stack.log_dir / "keyway.yaml"
    config_path.write_text(
        render_config(
            instant.url,
            slow.url,
            overload_keys=overload_keys,
            pool_size=pool_size,
            limited=limited,
            costs=costs,
        )
    )
    redis_url = f"redis://127.0.0.1:{redis.port}/0"
    started = [
        stack.start_gateway(f"keyway-{i}", config_path, redis_url, workers) for i in range(replicas)
    ]
    front = stack.start_haproxy(started) if haproxy else started[0]
    pools = {
        Aliases.INSTANT: instant_pool(pool_size, limited),
        Aliases.SLOW: _pool("s", _FIRST_SLOW, pool_size, limited=limited),
        Aliases.OVERLOAD: overload_keys,
        **{c.alias: c.keys for c in costs or []},
    }
    return Topology(
        redis=redis,
        instant=instant,
        slow=slow,
        replicas=started,
        front=front,
        overload_keys=overload_keys,
        workers=workers,
        limited=limited,
        pools=pools,
        costs=list(costs or []),
    )


def overload_pool(count: int, rpm: int) -> list[UpstreamKey]:
    """`count` keys allowing `rpm` requests per minute each."""
    return _keys("t", _FIRST_OVERLOAD, count, rpm=rpm)
