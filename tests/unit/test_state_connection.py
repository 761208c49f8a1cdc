"""open_redis: a `rediss+sentinel://` URL speaks TLS to the sentinels and to the master, so the
Redis password never crosses the network in clear; `redis+sentinel://` stays plain."""

from __future__ import annotations

from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

from gateway.state.connection import open_redis


def test_rediss_sentinel_uses_tls_to_the_sentinels_and_the_master() -> None:
    handle = open_redis("rediss+sentinel://:s3cret@127.0.0.1:26379,127.0.0.2:26380/main")
    pool = handle.client.connection_pool
    assert pool.connection_class is SentinelManagedSSLConnection
    sentinels = pool.sentinel_manager.sentinels
    assert len(sentinels) == 2
    assert all(s.connection_pool.connection_class is SSLConnection for s in sentinels)


def test_redis_sentinel_stays_plain() -> None:
    handle = open_redis("redis+sentinel://127.0.0.1:26379/main")
    pool = handle.client.connection_pool
    assert pool.connection_class is SentinelManagedConnection
    sentinels = pool.sentinel_manager.sentinels
    assert not any(issubclass(s.connection_pool.connection_class, SSLConnection) for s in sentinels)
