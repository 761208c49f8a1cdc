"""Degraded mode: how a replica keeps its promises while Redis is unreachable.

Chosen per kind of state (docs/architecture.md, "Degraded mode", states the bound of each):
- client auth: the local cache, as always (an unknown key is 401, never "allowed because
  Redis is down");
- client limits and key limits: the same Lua scripts on an in-process store, with every limit
  divided (rounded down) by the fleet's worker count: the larger of the count last seen in the
  heartbeats and `routing.degraded_replicas`. The shares of all workers then add up to at most
  the limit. A positive limit whose share is 0 (smaller than the fleet, or a worker that knows
  no count at all) admits nothing here: it is never passed to a script, where 0 means "none";
- keys disabled in Redis (by an operator, or a 401/403) as last read by the config watcher:
  never leased locally;
- budgets: a local allowance per worker and per budget period (UTC day / month), then 429;
  the local spend outlives the outage, so a flapping Redis grants no fresh allowance;
- breakers and cooldowns: in-process (the local store's), kept from one outage to the next
  until they expire;
- settlements of leases taken in Redis: queued (bounded: routing/settler.py) and replayed
  idempotently on recovery; spend of requests admitted locally: replayed as idempotent "late"
  records (client_settle.lua);
- usage (per key and model, per client and alias): counted in the worker whatever the store
  and flushed when Redis answers (bounded: gateway/state/usage_buffer.py).
Recovery is automatic: the Redis guard's probe succeeds and the next request uses Redis again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.clients import Client
from gateway.state.connection import open_redis
from gateway.state.store import SharedState

__all__ = ["DegradedMode", "LocalLimits", "share"]

log = logging.getLogger("keyway.degraded")

Candidate = tuple[str | int, ...]
"""(key id, rpm, tpm, max concurrency, weight), as acquire.lua takes it; 0 = no limit."""

_FORGOTTEN = ("*}:disabled",)
"""What recovery drops from the local store: the keys a 401/403 disabled locally (Redis holds
the operator's truth; the watcher's copy of it is applied by `candidates`). Everything else
expires by its own TTL (the scripts write no usage: the worker counts it, whatever the store)."""


def share(limit: int, replicas: int | None) -> int:
    """One worker's part of a fleet-wide `limit`: floor(limit / replicas).

    0 or less means "no limit" and stays 0. For a positive limit the result may be 0 (fewer
    units than workers, or `replicas` unknown): that worker admits nothing under this limit.
    Rounding down is what makes the shares add up to at most the limit; a remainder handed out
    by replica rank could double-grant while workers disagree on the membership.
    """
    if limit <= 0:
        return 0
    if replicas is None or replicas < 1:
        return 0
    return limit // replicas


def _unshared(limit: int, part: int) -> bool:
    """A real limit of which this worker has no share."""
    return limit > 0 and part == 0


@dataclass(frozen=True, slots=True)
class LocalLimits:
    """A client's limits for local admission; 0 = no limit."""

    rpm: int
    tpm: int
    budget_day_micros: int
    budget_month_micros: int
    refused: str = ""
    """`rpm`, `tpm`, `budget_day` or `budget_month` (as client_admit.lua names its refusals):
    a limit of which this worker has no share (an allowance of 0, for a budget); the client is
    refused without a script call."""


class DegradedMode:
    """The local share of every limit and the in-process store that enforces it."""

    def __init__(
        self,
        *,
        prefix: str,
        budget_allowance_micros: int,
        expected_replicas: int | None = None,
    ) -> None:
        self.local = SharedState(open_redis(None), prefix=prefix)
        self.budget_allowance_micros = budget_allowance_micros
        self.expected_replicas = expected_replicas
        """`routing.degraded_replicas`: the fleet size assumed at least (None: not configured)."""
        self.seen_replicas: int | None = None
        """The live workers counted by the last heartbeat that reached Redis (None: never)."""
        self.disabled: Mapping[str, frozenset[str]] = {}
        """Key ids disabled in Redis, by provider, as the config watcher last read them."""
        self._scripts_loaded = False

    @property
    def replicas(self) -> int | None:
        """The worker count every limit is divided by; None: this worker knows none."""
        known = [n for n in (self.seen_replicas, self.expected_replicas) if n is not None]
        return max(known) if known else None

    def saw_replicas(self, count: int) -> None:
        """A heartbeat reached Redis and counted `count` live workers, this one included."""
        self.seen_replicas = max(1, count)

    def use_disabled(self, disabled: Mapping[str, frozenset[str]]) -> None:
        """The disabled keys of every pool, as just read from Redis (ConfigSync)."""
        self.disabled = disabled

    async def ensure_ready(self) -> None:
        if not self._scripts_loaded:
            await self.local.load_scripts()
            self._scripts_loaded = True

    async def reset(self) -> None:
        """Redis is back: drop what the local store keeps only as a by-product (`_FORGOTTEN`).

        Windows, spend, admission holds, leases of calls still running, breakers and cooldowns
        stay until their own TTLs: a spend key lives through its day or month, so the next
        outage of the same period starts from what this one spent, not from a fresh allowance.
        """
        client = self.local.handle.client
        doomed = [key for pattern in _FORGOTTEN async for key in client.scan_iter(match=pattern)]
        if doomed:
            await client.delete(*doomed)

    def share(self, limit: int) -> int:
        """This worker's part of a cluster-wide limit (see `share`)."""
        return share(limit, self.replicas)

    def candidates(
        self, provider: str, candidates: Sequence[Candidate]
    ) -> tuple[list[Candidate], list[str]]:
        """The keys this worker may lease locally, each limit cut to its share; and, as
        acquire.lua reports skipped keys (`id=reason`), those it may not: `disabled` (in Redis,
        when last read) or `no_local_share` (a limit of which this worker has no share)."""
        disabled = self.disabled.get(provider, frozenset())
        usable: list[Candidate] = []
        left_out: list[str] = []
        for c in candidates:
            key_id = str(c[0])
            if key_id in disabled:
                left_out.append(f"{key_id}=disabled")
                continue
            limits = (int(c[1]), int(c[2]), int(c[3]))
            parts = tuple(self.share(limit) for limit in limits)
            if any(_unshared(limit, part) for limit, part in zip(limits, parts, strict=True)):
                left_out.append(f"{key_id}=no_local_share")
                continue
            usable.append((c[0], *parts, c[4]))
        return usable, left_out

    def client_limits(self, client: Client) -> LocalLimits:
        """The client's limits for local admission: shares of its rates, and its budgets capped
        by the allowance (the local spend counts against it for the whole day / month)."""
        rpm, tpm = self.share(client.rpm), self.share(client.tpm)
        allowance = self.budget_allowance_micros
        day = min(client.budget_day_micros, allowance) if client.budget_day_micros > 0 else 0
        month = min(client.budget_month_micros, allowance) if client.budget_month_micros > 0 else 0
        refused = next(
            (
                reason
                for reason, limit, part in (
                    ("rpm", client.rpm, rpm),
                    ("tpm", client.tpm, tpm),
                    ("budget_day", client.budget_day_micros, day),  # an allowance of 0
                    ("budget_month", client.budget_month_micros, month),
                )
                if _unshared(limit, part)
            ),
            "",
        )
        return LocalLimits(rpm, tpm, day, month, refused)
