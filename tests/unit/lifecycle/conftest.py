"""The in-process tier's fixture: a Gateway on the embedded store over ASGI, upstream scripted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.lifecycle.in_process import Lifecycle, lifecycle_config, running


@pytest.fixture
async def lc() -> AsyncIterator[Lifecycle]:
    async with running(lifecycle_config()) as lifecycle:
        yield lifecycle
