"""The script suites' store: every test runs on standalone Redis, a three-node Cluster and the
embedded store (fakeredis + lupa), each time under a key prefix of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.state.connection import open_redis
from gateway.state.store import SharedState


@pytest.fixture(params=["standalone", "cluster", "embedded"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[SharedState]:
    if request.param == "standalone":
        url: str | None = request.getfixturevalue("redis_url")
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster")
    else:
        url = None
    # the scripts' semantics are under test, not latency: a busy CI machine must not time out
    store = SharedState(open_redis(url, timeout_s=5.0), prefix=f"st{uuid.uuid4().hex[:8]}")
    await store.load_scripts()
    yield store
    await store.aclose()
