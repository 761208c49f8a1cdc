"""Degraded mode: how a replica keeps its promises while Redis is unreachable.

Chosen per kind of state:
- client auth: the local cache, as always (an unknown key is 401, never "allowed because
  Redis is down");
- client limits and key limits: the same Lua scripts on an in-process store, with every limit
  divided by the number of live replicas last seen in Redis (heartbeats), so the cluster as a
  whole stays within the limits;
- budgets: a small local allowance per replica, then 429;
- breakers and cooldowns: in-process (the local store's), fresh at the start of the outage;
- settlements of leases taken in Redis: queued and replayed idempotently on recovery; spend of
  requests admitted locally, and the usage per upstream key and model of attempts made on
  local leases: replayed as idempotent "late" records (client_settle.lua, settle.lua).
Recovery is automatic: the Redis guard's probe succeeds and the next request uses Redis again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from gateway.clients import Client
from gateway.state.connection import open_redis
from gateway.state.store import SharedState

__all__ = ["DegradedMode"]

log = logging.getLogger("keyway.degraded")


class DegradedMode:
    """The local share of every limit and the in-process store that enforces it."""

    def __init__(self, *, prefix: str, budget_allowance_micros: int) -> None:
        self.local = SharedState(open_redis(None), prefix=prefix)
        self.replicas = 1
        self.budget_allowance_micros = budget_allowance_micros
        self._scripts_loaded = False

    async def ensure_ready(self) -> None:
        if not self._scripts_loaded:
            await self.local.load_scripts()
            self._scripts_loaded = True

    async def reset(self) -> None:
        """Forget the outage's local state (called when Redis is back)."""
        await self.local.handle.client.flushall()

    def share(self, limit: int) -> int:
        """This replica's part of a cluster-wide limit (0 = no limit stays 0)."""
        if limit <= 0:
            return 0
        return max(1, limit // max(1, self.replicas))

    def candidates(
        self, candidates: Sequence[tuple[str | int, ...]]
    ) -> list[tuple[str | int, ...]]:
        """(id, rpm, tpm, max concurrency, weight) with each limit cut to this replica's share."""
        return [
            (c[0], self.share(int(c[1])), self.share(int(c[2])), self.share(int(c[3])), c[4])
            for c in candidates
        ]

    def client_limits(self, client: Client) -> tuple[int, int, int, int]:
        """(rpm, tpm, daily budget, monthly budget) for local admission."""
        allowance = self.budget_allowance_micros
        day = min(client.budget_day_micros, allowance) if client.budget_day_micros else 0
        month = min(client.budget_month_micros, allowance) if client.budget_month_micros else 0
        return self.share(client.rpm), self.share(client.tpm), day, month
