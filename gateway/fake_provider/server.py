"""Serves the fake provider with Granian: ASGI interface, uvloop, warnings-only logs.

Granian imports its target by string in every worker process, so the settings travel to the
workers as ``KEYWAY_FAKE_*`` environment variables read by ``app_from_env``. Faults and stats
live in one process: use ``workers=1`` when a test arms faults or reads ``/_fake/stats``.
"""

from __future__ import annotations

import os

from granian.constants import Interfaces, Loops
from granian.log import LogLevels
from granian.server import Server

from gateway.fake_provider.settings import FakeSettings

__all__ = ["APP_FACTORY", "serve"]

APP_FACTORY = "gateway.fake_provider.app:app_from_env"


def serve(host: str, port: int, settings: FakeSettings | None = None, workers: int = 1) -> None:
    """Run the fake provider on ``host:port`` until interrupted (blocks)."""
    os.environ.update((settings or FakeSettings()).to_env())
    server = Server(
        APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        loop=Loops.uvloop,
        log_level=LogLevels.warning,
        factory=True,
        backlog=2048,
    )
    server.serve()
