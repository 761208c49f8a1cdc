"""Settlements off the client's critical path: sent in the background, queued while Redis is away.

Every settle script is idempotent by request id, so a batch whose reply was lost, or one
replayed after an outage, is applied exactly once. settle.lua answers with the key's state after
the outcome (its breaker); that answer feeds the `keyway_key_state` gauges.

The queue is in memory (replicas are stateless: nothing spills to disk) and bounded by
`routing.degraded_settlement_queue` batches. Past it the oldest batch is dropped: counted in
`keyway_settlements_dropped_total{reason="queue_full"}`, with one warning per outage. What a
dropped batch loses: for a lease taken in Redis, nothing for good (Redis sweeps the lease after
`routing.lease_ttl_s` and charges the admission its estimate); for a late record, that request's
spend and usage never reach Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from gateway.state.scripts import SETTLE
from gateway.state.store import ScriptCall, SharedState, StateError, StateUnavailable
from gateway.telemetry.metrics import get_metrics

__all__ = ["Settler"]

log = logging.getLogger("keyway.settle")


class Settler:
    """Runs settle batches as background tasks; replays the ones Redis could not take."""

    def __init__(self, state: SharedState, *, max_queued: int = 100_000) -> None:
        self._state = state
        self._tasks: set[asyncio.Task[None]] = set()
        self.max_queued = max(1, max_queued)
        # unbounded deque, bounded by `_queue`: the replayer takes a batch out while Redis runs
        # it, and an overflow meanwhile must drop the oldest still queued, not another one
        self._queued: deque[Sequence[ScriptCall]] = deque()
        self._replayer: asyncio.Task[None] | None = None
        self.dropped = 0
        """Batches dropped for a full queue since start (also in the metric)."""
        self._dropping = False
        """The queue overflowed since it was last empty: warned once already."""

    @property
    def queued(self) -> int:
        """Batches held for Redis, at most `max_queued` (not counting one being replayed)."""
        return len(self._queued)

    @property
    def pending(self) -> int:
        """Settle tasks submitted and not yet finished (applied, queued or failed)."""
        return sum(not t.done() for t in self._tasks)

    def submit(
        self,
        calls: Sequence[ScriptCall],
        *,
        local: SharedState | None = None,
        provider: str = "",
        outcome: str = "",
    ) -> None:
        """Settle in the background: on Redis, or on `local` (the degraded-mode store).

        `provider` and `outcome`: those of the key settle among `calls`, to read the key's
        state off its reply (not for a local settle: Redis holds the cluster's truth).
        """
        coro = (
            self._send(calls, provider, outcome)
            if local is None
            else self._send_local(local, calls)
        )
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, calls: Sequence[ScriptCall], provider: str, outcome: str) -> None:
        try:
            replies = await self._state.run(calls)
        except StateUnavailable:
            self._queue(calls)
            self._ensure_replayer()
            return
        except StateError as exc:
            log.error("settlement rejected by redis: %s", exc)
            get_metrics().settlements_dropped("rejected")
            return
        if provider:
            _note_key_states(calls, replies, provider, outcome)

    @staticmethod
    async def _send_local(local: SharedState, calls: Sequence[ScriptCall]) -> None:
        try:
            await local.run(calls)
        except StateError as exc:
            log.error("local settlement failed: %s", exc)

    def _queue(self, calls: Sequence[ScriptCall], *, first: bool = False) -> None:
        """Hold `calls` for the replayer (`first`: at the head); past the bound drop the oldest."""
        if first:
            self._queued.appendleft(calls)
        else:
            self._queued.append(calls)
        over = len(self._queued) - self.max_queued
        if over <= 0:
            return
        for _ in range(over):
            self._queued.popleft()
        self.dropped += over
        get_metrics().settlements_dropped("queue_full", over)
        if not self._dropping:
            self._dropping = True
            log.warning(
                "settlement queue full (%d batches held for Redis): dropping the oldest; their "
                "leases expire in Redis, and their late charges and usage are lost "
                "(keyway_settlements_dropped_total counts them)",
                self.max_queued,
            )

    def _ensure_replayer(self) -> None:
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        delay = 0.2
        dropped_before = self.dropped
        while self._queued:
            await asyncio.sleep(delay)
            if not self._queued:
                break
            calls = self._queued.popleft()
            try:
                await self._state.run(calls)
            except StateUnavailable:
                self._queue(calls, first=True)
                delay = min(max(delay, 0.2) * 2, 5.0)
                continue
            except StateError as exc:  # a script refused it: replaying again would not help
                log.error("queued settlement dropped: %s", exc)
                get_metrics().settlements_dropped("rejected")
            delay = 0.0 if self._queued else 0.2
        self._dropping = False
        lost = self.dropped - dropped_before
        if lost:
            log.warning("queued settlements replayed; %d batches were dropped (queue full)", lost)
        else:
            log.info("queued settlements replayed")

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for in-flight settlements and the replay queue (shutdown)."""
        pending = [t for t in self._tasks if not t.done()]
        if self._replayer is not None:
            pending.append(self._replayer)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout_s)
            if still or self._queued:
                log.error(
                    "shutdown: %d settlement batches could not be applied", len(still) + self.queued
                )


def _note_key_states(
    calls: Sequence[ScriptCall], replies: Sequence[Any], provider: str, outcome: str
) -> None:
    """settle.lua replies {settled, key id, breaker state}: the key's state after `outcome`."""
    for call, reply in zip(calls, replies, strict=True):
        if call.script is SETTLE:
            get_metrics().key_settled(provider, str(reply[1]), outcome, str(reply[2]))
