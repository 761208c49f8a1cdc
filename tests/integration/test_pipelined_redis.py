"""The auto-pipelined script connection against a real redis-server."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.state.resp import PipelinedRedis
from tests.harness import free_port, redis_cli_binary, start_redis


async def test_concurrent_calls_resolve_in_order(redis_url: str) -> None:
    r = PipelinedRedis(redis_url, timeout_s=1)
    try:
        replies = await asyncio.gather(*(r.execute("ECHO", f"m{i}") for i in range(200)))
        assert replies == [f"m{i}" for i in range(200)]
        with pytest.raises(NoScriptError):
            await r.evalsha("0" * 40, 0)
        with pytest.raises(ResponseError):
            await r.execute("NOT-A-COMMAND")
        sha = await r.script_load("return ARGV[1]")
        assert await r.evalsha(sha, 0, "back") == "back"
    finally:
        await r.aclose()


async def test_password_and_database_from_the_url(logs: Path) -> None:
    cli = redis_cli_binary()
    server = start_redis(logs)
    try:
        await asyncio.to_thread(
            subprocess.run,
            [cli, "-p", str(server.port), "config", "set", "requirepass", "s3cret"],
            check=True,
            capture_output=True,
        )
        good = PipelinedRedis(f"redis://:s3cret@127.0.0.1:{server.port}/3", timeout_s=1)
        await good.execute("SET", "where", "db3")
        check = await asyncio.to_thread(
            subprocess.run,
            [cli, "-p", str(server.port), "-a", "s3cret", "-n", "3", "get", "where"],
            capture_output=True,
            text=True,
        )
        assert check.stdout.strip() == "db3"
        await good.aclose()
        bad = PipelinedRedis(f"redis://:wrong@127.0.0.1:{server.port}/0", timeout_s=1)
        with pytest.raises(RedisConnectionError):
            await bad.ping()
        await bad.aclose()
    finally:
        server.stop()


async def test_unreachable_and_unresponsive_redis_fail_fast() -> None:
    closed = PipelinedRedis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    with pytest.raises(RedisConnectionError):
        await closed.ping()
    await closed.aclose()
    # a listener that accepts and never answers: the watchdog times the call out
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    mute = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout_s=0.3)
    try:
        with pytest.raises(RedisTimeoutError):
            await mute.ping()
    finally:
        await mute.aclose()
        silent.close()


async def test_reconnects_after_the_server_restarts(logs: Path) -> None:
    server = start_redis(logs)
    r = PipelinedRedis(f"redis://127.0.0.1:{server.port}/0", timeout_s=1)
    try:
        assert await r.ping()
        server.stop()
        with pytest.raises(RedisConnectionError):
            await r.ping()
        server = await asyncio.to_thread(start_redis, logs, port=server.port)
        assert await r.ping()
    finally:
        await r.aclose()
        server.stop()
