"""Who may call the admin API: admin keys from KEYWAY_ADMIN_KEYS, failures rate-limited and audited.

    no key, or an unknown key   401   (counted as a failure of the remote address)
    a client key                403   (counted too: a client probing the admin API is news)
    10 failures in 60 s         429   from that address until the window frees up

Admin keys are held as SHA-256 digests and compared in constant time, every configured key each
time. The audit log (logger `keyway.audit`) names the remote address, never the key presented.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

__all__ = ["AdminAuth", "FailureLimiter", "audit", "presented_key"]

audit = logging.getLogger("keyway.audit")

MIN_ADMIN_KEY_CHARS = 16


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in `Authorization: Bearer ...` or `x-api-key`."""
    value = headers.get("authorization", "").strip()
    if value:
        scheme, _, rest = value.partition(" ")
        return rest.strip() or None if scheme.lower() == "bearer" else value
    return headers.get("x-api-key", "").strip() or None


class FailureLimiter:
    """Failed attempts per remote address in a sliding window (this process only)."""

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, remote: str) -> deque[float] | None:
        times = self._seen.get(remote)
        if times is None:
            return None
        horizon = self._clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._seen[remote]
            return None
        return times

    def retry_after_s(self, remote: str) -> int:
        """0 when `remote` may try; else the seconds until its oldest failure leaves the window."""
        times = self._recent(remote)
        if times is None or len(times) < self.max_failures:
            return 0
        return max(1, int(times[0] + self.window_s - self._clock()) + 1)

    def fail(self, remote: str) -> None:
        times = self._recent(remote)
        if times is None:
            times = deque(maxlen=self.max_failures)
            self._seen[remote] = times
            while len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)
        self._seen.move_to_end(remote)
        times.append(self._clock())


class AdminAuth:
    """The admin keys, as digests; `identify` names the matching key ('admin#2') or None."""

    def __init__(self, keys: list[str]) -> None:
        for i, key in enumerate(keys):
            if len(key) < MIN_ADMIN_KEY_CHARS:
                raise ValueError(
                    f"KEYWAY_ADMIN_KEYS[{i}]: an admin key needs at least "
                    f"{MIN_ADMIN_KEY_CHARS} characters"
                )
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        self.limiter = FailureLimiter()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AdminAuth:
        raw = env.get("KEYWAY_ADMIN_KEYS", "")
        return cls([k.strip() for k in raw.split(",") if k.strip()])

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = 0
        for i, known in enumerate(self._digests, start=1):
            # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(known, digest):
                found = i
        return f"admin#{found}" if found else None
