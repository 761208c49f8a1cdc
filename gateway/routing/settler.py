"""Settlements off the client's critical path: sent in the background, queued while Redis is away.

Every settle script is idempotent by request id, so a batch whose reply was lost, or one
replayed after an outage, is applied exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from gateway.state.store import ScriptCall, SharedState, StateError

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

    def submit(self, calls: Sequence[ScriptCall]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_now(self, calls: Sequence[ScriptCall]) -> None:
        """Settle before returning (streams: the response is already complete)."""
        await self._send(calls)

    async def _send(self, calls: Sequence[ScriptCall]) -> None:
        try:
            await self._state.run(calls)
        except StateError as exc:
            log.warning("settlement queued for replay: %s", exc)
            self._queued.append(calls)
            self._ensure_replayer()

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
            except StateError:
                delay = min(delay * 2, 5.0)
                continue
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
