"""Per-key request and token windows behind the fake provider's rate-limit headers and 429s.

Each key gets a fixed 60 s window that opens with its first request. Unset limits are
advertised as very large numbers (and never enforced) so that a gateway learning the
``remaining`` headers never starves a key during a load test.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["ADVERTISED_RPM", "ADVERTISED_TPM", "WINDOW_S", "QuotaBook", "QuotaSnapshot"]

WINDOW_S = 60.0
ADVERTISED_RPM = 1_000_000
ADVERTISED_TPM = 1_000_000_000


@dataclass(slots=True)
class QuotaSnapshot:
    """One key's window as seen by one request, in the units the headers speak."""

    admitted: bool
    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_s: float

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until the window that refused this request has passed."""
        return max(1, math.ceil(max(self.reset_requests_s, self.reset_tokens_s)))

    @classmethod
    def exhausted(
        cls, retry_after_s: float, limit_requests: int, limit_tokens: int
    ) -> QuotaSnapshot:
        """What a rate-limit fault reports: nothing left until ``retry_after_s``."""
        return cls(
            admitted=False,
            limit_requests=limit_requests,
            remaining_requests=0,
            reset_requests_s=retry_after_s,
            limit_tokens=limit_tokens,
            remaining_tokens=0,
            reset_tokens_s=retry_after_s,
        )


class _Window:
    __slots__ = ("opened", "requests", "tokens")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.requests = 0
        self.tokens = 0


class QuotaBook:
    """The windows of every key seen so far."""

    def __init__(self, rpm_limit: int | None, tpm_limit: int | None) -> None:
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.limit_requests = rpm_limit or ADVERTISED_RPM
        self.limit_tokens = tpm_limit or ADVERTISED_TPM
        self._windows: dict[str, _Window] = {}

    def admit(self, key: str, tokens: int, now: float | None = None) -> QuotaSnapshot:
        """Count one request of ``tokens`` tokens for ``key``, unless that would break a limit."""
        now = time.monotonic() if now is None else now
        window = self._windows.get(key)
        if window is None or now - window.opened >= WINDOW_S:
            window = self._windows[key] = _Window(now)
        reset_s = window.opened + WINDOW_S - now
        admitted = (self.rpm_limit is None or window.requests < self.rpm_limit) and (
            self.tpm_limit is None or window.tokens + tokens <= self.tpm_limit
        )
        if admitted:
            window.requests += 1
            window.tokens += tokens
        return QuotaSnapshot(
            admitted=admitted,
            limit_requests=self.limit_requests,
            remaining_requests=max(0, self.limit_requests - window.requests),
            reset_requests_s=reset_s,
            limit_tokens=self.limit_tokens,
            remaining_tokens=max(0, self.limit_tokens - window.tokens),
            reset_tokens_s=reset_s,
        )

    def peek(self, key: str, now: float | None = None) -> QuotaSnapshot:
        """The window of ``key`` as it stands, counting nothing (for headers on refusals)."""
        now = time.monotonic() if now is None else now
        window = self._windows.get(key)
        if window is None or now - window.opened >= WINDOW_S:
            window = _Window(now)
        return QuotaSnapshot(
            admitted=True,
            limit_requests=self.limit_requests,
            remaining_requests=max(0, self.limit_requests - window.requests),
            reset_requests_s=window.opened + WINDOW_S - now,
            limit_tokens=self.limit_tokens,
            remaining_tokens=max(0, self.limit_tokens - window.tokens),
            reset_tokens_s=window.opened + WINDOW_S - now,
        )

    def exhausted(self, retry_after_s: float) -> QuotaSnapshot:
        """The snapshot a 429 fault reports (see :meth:`QuotaSnapshot.exhausted`)."""
        return QuotaSnapshot.exhausted(retry_after_s, self.limit_requests, self.limit_tokens)

    def clear(self) -> None:
        self._windows.clear()
