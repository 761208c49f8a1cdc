"""The in-process tier's fixture: a Gateway on the embedded store over ASGI, upstream scripted."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.api.hot_paths import HotPathDispatcher
from gateway.app import create_app
from gateway.runtime import Gateway
from tests.unit.lifecycle.in_process import ENV, Lifecycle, lifecycle_config
from tests.unit.lifecycle.scripted_transport import ScriptedTransport
from tests.unit.lifecycle.upstream_replies import answer


@pytest.fixture
async def lc() -> AsyncIterator[Lifecycle]:
    cfg = lifecycle_config()
    upstream = ScriptedTransport(answer)
    gw = Gateway(cfg, ENV, transport=upstream)
    app = create_app(cfg, gw)
    served = HotPathDispatcher(app, app.state.hot_routes)  # as app_from_env serves it (no CORS)
    await gw.start()
    transport = httpx.ASGITransport(app=served)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://keyway") as http:
            yield Lifecycle(gw, served, upstream, http)
    finally:
        await gw.stop()
