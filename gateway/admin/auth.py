"""Who may call the admin API: admin keys from KEYWAY_ADMIN_KEYS, failures rate-limited and audited.

    a valid admin key           passes, always: other callers' failures never lock it out
    no key, or an unknown key   401   (counted as a failure of the client's address)
    a client key                403   (counted too: a client probing the admin API is news)
    10 failures in 60 s         429   for that address's failing attempts until the window frees

The key is checked first and only failures are throttled, so behind a load balancer, where every
admin may share one address, an attacker's failures cannot lock the admins out. The client's
address is the peer's, or with `server.trusted_proxy_hops` = N proxies in front
(KEYWAY_TRUSTED_PROXY_HOPS) the N-th X-Forwarded-For entry from the right: the address the
farthest trusted proxy saw. Entries further left were written by the client and are never used.

Admin keys are held as SHA-256 digests and compared in constant time, every configured key each
time. The audit log (logger `keyway.audit`) names the client's address, never the key presented.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

__all__ = ["AdminAuth", "FailureLimiter", "Verdict", "audit", "client_address", "presented_key"]

audit = logging.getLogger("keyway.audit")

MIN_ADMIN_KEY_CHARS = 16


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key in `Authorization: Bearer ...` or `x-api-key`."""
    value = headers.get("authorization", "").strip()
    if value:
        scheme, _, rest = value.partition(" ")
        return rest.strip() or None if scheme.lower() == "bearer" else value
    return headers.get("x-api-key", "").strip() or None


def _address(entry: str) -> str | None:
    """An X-Forwarded-For entry as a canonical IP address (a port or brackets dropped), or None."""
    entry = entry.strip()
    if entry.startswith("["):  # [v6]:port
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:  # v4:port
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: Iterable[str], hops: int) -> str:
    """Who is calling: the peer's address, or the `hops`-th X-Forwarded-For entry from the right.

    Each trusted proxy appends the address it saw, so with `hops` of them the entry `hops` places
    from the right is what the farthest one saw. Anything else (no proxy trusted, fewer entries
    than proxies: the request bypassed them; an entry that is no address) is the peer's address.
    """
    if hops > 0:
        entries = [e for value in forwarded_for for e in value.split(",")]
        if len(entries) >= hops:
            found = _address(entries[-hops])
            if found is not None:
                return found
    return peer or "-"


class Verdict(NamedTuple):
    """The answer to one admin request: `status` 0 lets it through as `actor`."""

    status: int
    actor: str | None = None
    reason: str = ""
    """Why it failed, for the audit line: no key, client key, unknown key."""
    retry_after_s: int = 0


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

    def __init__(self, keys: list[str], trusted_proxy_hops: int = 0) -> None:
        for i, key in enumerate(keys):
            if len(key) < MIN_ADMIN_KEY_CHARS:
                raise ValueError(
                    f"KEYWAY_ADMIN_KEYS[{i}]: an admin key needs at least "
                    f"{MIN_ADMIN_KEY_CHARS} characters"
                )
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        self.limiter = FailureLimiter()
        self.trusted_proxy_hops = trusted_proxy_hops

    @classmethod
    def from_env(cls, env: Mapping[str, str], trusted_proxy_hops: int = 0) -> AdminAuth:
        raw = env.get("KEYWAY_ADMIN_KEYS", "")
        return cls([k.strip() for k in raw.split(",") if k.strip()], trusted_proxy_hops)

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

    def authenticate(
        self, presented: str | None, remote: str, is_client_key: Callable[[str], bool]
    ) -> Verdict:
        """Check the key first; throttle and count only failures (of `remote`)."""
        if presented is None:
            return self._failed(remote, 401, "no key")
        actor = self.identify(presented)
        if actor is not None:
            return Verdict(0, actor)
        if is_client_key(presented):
            return self._failed(remote, 403, "client key")
        return self._failed(remote, 401, "unknown key")

    def _failed(self, remote: str, status: int, reason: str) -> Verdict:
        wait = self.limiter.retry_after_s(remote)
        if wait:
            return Verdict(429, reason=reason, retry_after_s=wait)
        self.limiter.fail(remote)
        return Verdict(status, reason=reason)
