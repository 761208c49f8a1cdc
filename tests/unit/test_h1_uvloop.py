"""The `h1` suites once more on uvloop, the loop the gateway runs on.

Under plain asyncio a TLS connection that is closed mid-stream stops at once because the
peer's next record fails the shutdown; under uvloop the same close waited up to 30 s for a
close_notify while the provider kept generating. So these suites run on both loops.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__: list[str] = []

SUITES = [
    "tests/unit/test_h1_transport.py",
    "tests/unit/test_h1_framing.py",
    "tests/unit/test_h1_exchange.py",
    "tests/unit/test_h1_pool.py",
    "tests/unit/test_h1_fuzz.py",
]

PLUGINS = ["-p", "no:cacheprovider", "-p", "tests.unit.h1_uvloop_policy"]


def test_h1_suites_pass_on_uvloop() -> None:
    root = Path(__file__).resolve().parents[2]
    # a unit-only inner run: the CI guard (no integration test ran) is the outer run's business
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *PLUGINS, *SUITES],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert "event loop policy: uvloop" in result.stdout
    assert result.returncode == 0, result.stdout[-4000:]
