"""Open the Redis client a URL names: standalone, Sentinel, Cluster, or the embedded store."""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelManagedSSLConnection

from gateway.state.resp import PipelinedRedis

__all__ = ["RedisHandle", "open_redis"]

log = logging.getLogger("keyway.state")


class HiredisPackedConnection(aioredis.Connection):
    """Packs commands with hiredis's C serializer instead of redis-py's pure-Python one.

    Measured here: redis-py's asyncio `pack_command` cost ~100 µs per script call with ~20
    arguments, more than Redis spends running the script.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD" -> two words
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


class RedisHandle:
    """A connected client and what kind of deployment it talks to."""

    def __init__(
        self,
        client: Any,
        *,
        cluster: bool,
        embedded: bool,
        description: str,
        fast: PipelinedRedis | None = None,
    ) -> None:
        self.client = client
        self.fast = fast
        """The auto-pipelined connection for script calls (plain `redis://` only)."""
        self.cluster = cluster
        self.embedded = embedded
        self.description = description


def _embedded() -> RedisHandle:
    import fakeredis  # imported lazily: only the embedded store needs it

    server = fakeredis.FakeServer()
    client = fakeredis.FakeAsyncRedis(server=server, decode_responses=True)
    return RedisHandle(client, cluster=False, embedded=True, description="embedded (in-process)")


def open_redis(
    url: str | None, *, timeout_s: float = 0.5, max_connections: int = 64
) -> RedisHandle:
    """`None` -> the embedded store; `redis+cluster://` -> Cluster; `redis+sentinel://h:p/name`."""
    if not url:
        return _embedded()
    parts = urlsplit(url)
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    safe = urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        plain = url.replace("+cluster", "", 1)
        cluster = RedisCluster.from_url(plain, max_connections=max_connections * 4, **common)
        return RedisHandle(cluster, cluster=True, embedded=False, description=f"cluster {safe}")
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        service = parts.path.strip("/") or "mymaster"
        hosts = [
            (h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379)
            for h in (parts.netloc.rsplit("@", 1)[-1]).split(",")
        ]
        # rediss+sentinel: TLS to the sentinels and to the master (the password never in clear)
        tls = parts.scheme == "rediss+sentinel"
        sentinel_kwargs = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            **({"ssl": True} if tls else {}),
        }
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **common)  # type: ignore[no-untyped-call,unused-ignore]
        if tls:
            common["connection_class"] = SentinelManagedSSLConnection
        master = sentinel.master_for(service, password=parts.password, **common)
        return RedisHandle(master, cluster=False, embedded=False, description=f"sentinel {safe}")
    # a bounded pool that waits for a free connection rather than failing under bursts
    extra: dict[str, Any] = {}
    if parts.scheme == "redis":
        extra["connection_class"] = HiredisPackedConnection
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, **common, **extra
    )
    client = aioredis.Redis(connection_pool=pool)
    # KEYWAY_REDIS_AUTOPIPELINE=off sends script calls through redis-py instead (for comparison)
    use_fast = parts.scheme == "redis" and os.environ.get("KEYWAY_REDIS_AUTOPIPELINE") != "off"
    fast = PipelinedRedis(url, timeout_s=timeout_s) if use_fast else None
    return RedisHandle(
        client, cluster=False, embedded=False, description=f"standalone {safe}", fast=fast
    )
