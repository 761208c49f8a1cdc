"""The route table: model aliases -> ordered deployments -> key pools, built once from config.

Lookups on the hot path are dict reads; nothing here touches Redis.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.config import Config, PriceConfig
from gateway.config_load import resolve_secret
from gateway.providers.adapters import ProviderAdapter
from gateway.translate.output_limits import known_max_output_tokens

__all__ = ["Deployment", "Pool", "RouteTable", "UpstreamKey"]

_LUA_STRATEGY = {
    "least-utilised": "least-utilised",
    "lowest-cost": "least-utilised",
    "weighted": "weighted",
    "priority": "priority",
    "lowest-latency": "lowest-latency",
}


@dataclass(frozen=True, slots=True)
class UpstreamKey:
    """One upstream API key; its secret never appears in repr, logs or errors."""

    id: str
    secret: str = field(repr=False)
    candidate: tuple[str | int, ...] = field(repr=False)
    """The key as acquire.lua takes it: id, rpm, tpm, max concurrency, weight (0 = no limit)."""

    @property
    def masked(self) -> str:
        return f"...{self.secret[-4:]}" if len(self.secret) >= 8 else "..."


@dataclass(frozen=True, slots=True)
class Pool:
    """The keys of one provider: they share one Redis hash tag and one acquire call."""

    provider: str
    adapter: ProviderAdapter
    keys: tuple[UpstreamKey, ...]
    by_id: Mapping[str, UpstreamKey]


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to serve an alias: a provider pool and the model name that provider knows."""

    alias: str
    pool: Pool
    model: str
    strategy: str
    price: PriceConfig | None
    max_output_tokens: int | None = None
    """Upstream bodies ask for at most this many output tokens (`clamp_max_tokens`); None = any."""


class RouteTable:
    """Aliases and the chain of deployments each one tries, fallbacks included."""

    def __init__(self, cfg: Config, env: Mapping[str, str] | None = None) -> None:
        self.pools: dict[str, Pool] = {}
        for name, provider in cfg.providers.items():
            keys = tuple(
                UpstreamKey(
                    id=k.id,
                    secret=resolve_secret(k.secret, f"providers.{name}.keys[{i}].secret", env),
                    candidate=(k.id, k.rpm or 0, k.tpm or 0, k.max_concurrency or 0, k.weight),
                )
                for i, k in enumerate(provider.keys)
            )
            self.pools[name] = Pool(
                provider=name,
                adapter=ProviderAdapter.from_config(name, provider),
                keys=keys,
                by_id={k.id: k for k in keys},
            )
        own: dict[str, list[Deployment]] = {}
        for alias, model in cfg.models.items():
            deps = [
                Deployment(
                    alias=alias,
                    pool=self.pools[d.provider],
                    model=d.model,
                    strategy=_LUA_STRATEGY[model.strategy],
                    price=cfg.prices.get(d.model) or cfg.prices.get(alias) or cfg.prices.get("*"),
                    max_output_tokens=d.max_output_tokens or known_max_output_tokens(d.model),
                )
                for d in model.deployments
            ]
            if model.strategy == "lowest-cost":
                deps.sort(
                    key=lambda d: (d.price.input + d.price.output) if d.price else float("inf")
                )
            own[alias] = deps
        self.aliases: tuple[str, ...] = tuple(cfg.models)
        self._spread: dict[str, tuple[int, list[int]]] = {
            alias: (
                len(own[alias]),
                list(itertools.accumulate(len(d.pool.keys) for d in own[alias])),
            )
            for alias, model in cfg.models.items()
            if model.spread and len(own[alias]) > 1
        }
        """Spread aliases: (own deployments, running totals of their pools' key counts)."""
        self._chains: dict[str, tuple[Deployment, ...]] = {}
        for alias in cfg.models:
            chain: list[Deployment] = []
            seen: set[str] = set()
            queue = [alias]
            while queue:  # breadth-first over fallbacks; a cycle is visited once
                current = queue.pop(0)
                if current in seen:
                    continue
                seen.add(current)
                chain.extend(own[current])
                queue.extend(cfg.models[current].fallbacks)
            self._chains[alias] = tuple(chain)

    def chain(self, alias: str) -> tuple[Deployment, ...] | None:
        """The deployments to try for `alias`, in order; None for an unknown alias. A `spread`
        alias starts at one of its own deployments drawn by key count, then the next ones."""
        chain = self._chains.get(alias)
        spread = self._spread.get(alias)
        if chain is None or spread is None:
            return chain
        own, totals = spread
        start = bisect.bisect_right(totals, random.random() * totals[-1])
        if start == 0 or start >= own:
            return chain
        return chain[start:own] + chain[:start] + chain[own:]
