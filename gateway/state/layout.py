"""Names of the Redis keys: one hash tag per provider pool and per client key.

Everything a script touches shares the tag of its KEYS[1], so each script runs in one
Redis Cluster slot:  `<prefix>:{pool:<provider>}:...`  and  `<prefix>:{client:<id>}:...`.
"""

from __future__ import annotations

__all__ = ["client_prefix", "pool_prefix"]


def pool_prefix(prefix: str, provider: str) -> str:
    return f"{prefix}:{{pool:{provider}}}"


def client_prefix(prefix: str, client_id: str) -> str:
    return f"{prefix}:{{client:{client_id}}}"
