"""The recent routing decisions of this replica: which key served a request, and why others not.

A bounded in-memory ring (no Redis write on the hot path), read by `GET /admin/decisions`.
Each replica keeps its own: behind a load balancer, ask each replica or read the access logs.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["DecisionLog"]


class DecisionLog:
    def __init__(self, size: int = 256) -> None:
        self._ring: deque[dict[str, Any]] = deque(maxlen=size)

    def record(
        self,
        *,
        request_id: str,
        client_id: str,
        alias: str,
        attempts: int,
        chosen: str | None,
        skipped: list[str],
        failed: list[str],
        error: str | None,
    ) -> None:
        self._ring.append(
            {
                "at": time.time(),
                "request_id": request_id,
                "client_id": client_id,
                "model": alias,
                "attempts": attempts,
                "chosen": chosen,
                "skipped": [part for entry in skipped for part in entry.split(",") if part],
                "failed": failed,
                "error": error,
            }
        )

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        items = list(self._ring)[-max(0, limit) :]
        items.reverse()
        return items
