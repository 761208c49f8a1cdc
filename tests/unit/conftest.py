"""Fixtures shared by the h1 transport suites (test_h1_*.py): scripted servers and one transport.

A module may define its own `transport` (test_transport.py does, for every kind); that one wins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.providers.h1_transport import H1Transport
from tests.unit.h1_harness import Server


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """Scripted servers a test starts (`serving`) and appends here; all stopped afterwards."""
    started: list[Server] = []
    yield started
    for server in started:
        await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[H1Transport]:
    """An h1 transport with a pool of 16, closed after the test."""
    instance = H1Transport(max_connections=16)
    yield instance
    await instance.aclose()
