"""Names of the Redis keys: one hash tag per provider pool and per client key.

Everything a script touches shares the tag of its KEYS[1], so each script runs in one
Redis Cluster slot:  `<prefix>:{pool:<provider>}:...`  and  `<prefix>:{client:<id>}:...`.
"""

from __future__ import annotations

__all__ = ["WINDOW_SLOTS", "client_prefix", "pool_prefix", "window_requests"]

WINDOW_SLOTS = 61
"""One-second buckets a window counts (lua/lib/window.lua): the current one and the 60 before."""


def pool_prefix(prefix: str, provider: str) -> str:
    return f"{prefix}:{{pool:{provider}}}"


def client_prefix(prefix: str, client_id: str) -> str:
    return f"{prefix}:{{client:{client_id}}}"


def window_requests(window: dict[str, str], now_ms: int) -> int:
    """Requests in a window hash of lua/lib/window.lua (`<pool>:win:<key>`, `<client>:win`) at
    `now_ms`: the buckets still among the last WINDOW_SLOTS (scripts trim it only when they
    touch it, so the hash may hold buckets that have left)."""
    try:
        head = int(window.get("h", ""))
    except ValueError:
        return 0
    oldest = max(now_ms // 1000, head) - WINDOW_SLOTS + 1
    total = 0
    for bucket in range(max(oldest, head - WINDOW_SLOTS + 1), head + 1):
        try:
            total += max(int(window.get(f"r{bucket % WINDOW_SLOTS}", 0)), 0)
        except ValueError:
            continue
    return total
