"""Settlements off the client's critical path: sent in the background, queued while Redis is away.

Every settle script is idempotent by request id, so a batch whose reply was lost, or one
replayed after an outage, is applied exactly once. settle.lua answers with the key's state after
the outcome (its breaker); that answer feeds the `keyway_key_state` gauges.
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
        self._queued: deque[Sequence[ScriptCall]] = deque(maxlen=max_queued)
        self._replayer: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queued)

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
            self._queued.append(calls)
            self._ensure_replayer()
            return
        except StateError as exc:
            log.error("settlement rejected by redis: %s", exc)
            return
        if provider:
            _note_key_states(calls, replies, provider, outcome)

    @staticmethod
    async def _send_local(local: SharedState, calls: Sequence[ScriptCall]) -> None:
        try:
            await local.run(calls)
        except StateError as exc:
            log.error("local settlement failed: %s", exc)

    def _ensure_replayer(self) -> None:
        if self._replayer is None or self._replayer.done():
            self._replayer = asyncio.get_running_loop().create_task(self._replay())

    async def _replay(self) -> None:
        delay = 0.2
        while self._queued:
            await asyncio.sleep(delay)
            calls = self._queued[0]
            try:
                await self._state.run(calls)
            except StateUnavailable:
                delay = min(max(delay, 0.2) * 2, 5.0)
                continue
            except StateError as exc:  # a script refused it: replaying again would not help
                log.error("queued settlement dropped: %s", exc)
            self._queued.popleft()
            delay = 0.0 if self._queued else 0.2
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
