"""Usage counters, added up in the worker and written to Redis about once a second.

Counting usage inside settle.lua and client_settle.lua cost every request ~12 Redis commands,
on the one thread that serves the whole fleet. A worker now adds its requests up per pool or
client, hour and field group, and every `interval_s` sends one usage_flush.lua call per pool and
per client. A batch keeps its id until Redis confirms it, so a batch re-sent after a lost reply
or an outage is applied once (at-least-once delivery, idempotent writes).

Bounds: a worker that dies loses what it counted since its last flush (one interval); while
Redis is unreachable batches wait in memory, up to `max_pending_groups` field groups, after which
the oldest batches are dropped, counted in `keyway_settlements_dropped_total{reason="usage"}`
and logged. Usage is reporting; limits and budgets are enforced by the per-request scripts, never
from these counters. Hours are this worker's UTC clock (the per-request scripts used Redis's).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from gateway.state.layout import client_prefix, pool_prefix
from gateway.state.scripts import USAGE_FLUSH
from gateway.state.store import ScriptCall, SharedState, StateError

__all__ = ["UsageBuffer"]

log = logging.getLogger("keyway.usage")

_POOL_LAYOUT = "^[^:|]*|"
"""Pool usage groups are `<key id>|<model>:` (key ids hold neither '|' nor ':')."""
_CLIENT_LAYOUT = "^a:"
"""Client usage groups are `a:<alias>:`."""
_HOUR_S = 3600


@dataclass(slots=True)
class _Batch:
    id: str
    prefix: str
    layout: str
    rows: dict[tuple[int, str], list[int]]

    def call(self) -> ScriptCall:
        args: list[str | int] = [self.prefix, self.id, self.layout, len(self.rows)]
        for (hour, group), counts in self.rows.items():
            args.extend((hour, group, *counts))
        return ScriptCall(USAGE_FLUSH, (f"{self.prefix}:u:last",), tuple(args))


class UsageBuffer:
    """Adds usage up per (prefix, hour, group); `run()` flushes it, `flush()` does so now."""

    def __init__(
        self,
        state: SharedState,
        *,
        interval_s: float = 1.0,
        max_pending_groups: int = 100_000,
        clock: Callable[[], float] = time.time,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self._state = state
        self.interval_s = interval_s
        self.max_pending_groups = max_pending_groups
        self._clock = clock
        self._on_drop = on_drop
        self._open: dict[str, _Batch] = {}
        self._pending: list[_Batch] = []
        self._lock = asyncio.Lock()
        self._dropping = False

    def pool(
        self, provider: str, key_id: str, model: str, tokens_in: int, tokens_out: int,
        cost_micros: int, error: bool,
    ) -> None:  # fmt: skip
        """One attempt on an upstream key: usage per (key, model) of its pool."""
        prefix = pool_prefix(self._state.prefix, provider)
        self._add(prefix, _POOL_LAYOUT, f"{key_id}|{model}:", tokens_in, tokens_out, cost_micros,
                  error)  # fmt: skip

    def client(
        self, client_id: str, alias: str, tokens_in: int, tokens_out: int, cost_micros: int,
        error: bool,
    ) -> None:  # fmt: skip
        """One request of a client key: usage per alias."""
        prefix = client_prefix(self._state.prefix, client_id)
        self._add(prefix, _CLIENT_LAYOUT, f"a:{alias}:", tokens_in, tokens_out, cost_micros, error)

    def _add(
        self, prefix: str, layout: str, group: str, tin: int, tout: int, cost: int, err: bool
    ) -> None:
        batch = self._open.get(prefix)
        if batch is None:
            batch = self._open[prefix] = _Batch(uuid.uuid4().hex, prefix, layout, {})
        row_key = (int(self._clock()) // _HOUR_S, group)
        row = batch.rows.get(row_key)
        if row is None:
            row = batch.rows[row_key] = [0, 0, 0, 0, 0]
        row[0] += 1
        row[1] += max(int(tin), 0)
        row[2] += max(int(tout), 0)
        row[3] += max(int(cost), 0)
        row[4] += 1 if err else 0

    @property
    def pending_groups(self) -> int:
        """Field groups counted but not yet confirmed by Redis."""
        open_rows = sum(len(b.rows) for b in self._open.values())
        return open_rows + sum(len(b.rows) for b in self._pending)

    async def flush(self) -> bool:
        """Send everything counted so far; True when Redis has all of it."""
        async with self._lock:
            self._pending.extend(self._open.values())
            self._open = {}
            self._bound()
            if not self._pending:
                return True
            try:
                await self._state.run([b.call() for b in self._pending])
            except StateError as exc:
                log.debug("usage flush deferred: %s", exc)
                return False
            self._pending = []
            self._dropping = False
            return True

    def _bound(self) -> None:
        excess = sum(len(b.rows) for b in self._pending) - self.max_pending_groups
        dropped = 0
        while excess > 0 and self._pending:
            batch = self._pending.pop(0)
            excess -= len(batch.rows)
            dropped += sum(row[0] for row in batch.rows.values())
        if dropped:
            if not self._dropping:
                log.warning(
                    "usage counters dropped: Redis has been unreachable for longer than %d "
                    "pending field groups allow (routing.usage_max_pending_groups)",
                    self.max_pending_groups,
                )
                self._dropping = True
            if self._on_drop is not None:
                self._on_drop(dropped)

    async def run(self) -> None:
        """Flush every `interval_s` until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                await self.flush()
        finally:
            await asyncio.shield(self.flush())
