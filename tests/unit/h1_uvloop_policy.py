"""A pytest plugin (``-p tests.unit.h1_uvloop_policy``) that runs every test on uvloop.

Keyway serves on Granian with uvloop, whose transports differ from asyncio's where the `h1`
transport leans on them (TLS shutdown, abort, pause_reading); `test_h1_uvloop.py` runs the h1
suites again under this plugin.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

__all__ = ["pytest_terminal_summary"]

asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    policy = type(asyncio.get_event_loop_policy()).__module__
    terminalreporter.write_line(f"event loop policy: {policy}")
