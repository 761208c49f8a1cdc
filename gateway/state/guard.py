"""A circuit breaker around Redis itself: an outage costs one timeout per interval, not per call.

up        calls go to Redis; a connection error or timeout trips the guard
down      calls fail at once (no socket touched) until `retry_interval_s` has passed
probing   the first call after the interval goes to Redis; every other call still fails
          fast; the probe's success brings the guard up, its failure keeps it down
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RedisGuard"]


class RedisGuard:
    def __init__(
        self, retry_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.retry_interval_s = retry_interval_s
        self._clock = clock
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._probing = False
        self.on_change: Callable[[bool], None] | None = None

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    @property
    def down_for_s(self) -> float:
        return 0.0 if self._down_since is None else self._clock() - self._down_since

    def admit(self) -> bool:
        """May this call go to Redis? (While down, only one probe per interval may.)"""
        if self._down_since is None:
            return True
        if self._probing or self._clock() < self._next_probe:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._probing = False
        if self._down_since is not None:
            self._down_since = None
            if self.on_change is not None:
                self.on_change(True)

    def failed(self) -> None:
        now = self._clock()
        self._probing = False
        self._next_probe = now + self.retry_interval_s
        if self._down_since is None:
            self._down_since = now
            if self.on_change is not None:
                self.on_change(False)
