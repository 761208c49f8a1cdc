"""Runs wrk with one of the Lua scenarios and reads the JSON line its `done()` prints.

wrk (apt package `wrk`) is an event-loop load generator in C: one thread drives every
connection, so it stays far cheaper than the servers it measures. Latencies are those wrk
records per request, in microseconds, turned into milliseconds here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import msgspec

from loadtests.results import Latency

__all__ = ["SCENARIOS", "WrkError", "WrkOutput", "parse_wrk_output", "run_wrk"]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
_MARKER = "WRK_RESULT "


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


class _Errors(msgspec.Struct, frozen=True):
    connect: int
    read: int
    write: int
    status: int
    timeout: int


class _LatencyUs(msgspec.Struct, frozen=True):
    p50: int
    p90: int
    p99: int
    p999: int
    mean: float
    max: int


class WrkOutput(msgspec.Struct, frozen=True, kw_only=True):
    """The `WRK_RESULT` line of scenarios/chat.lua (and overload.lua's extra members)."""

    requests: int
    duration_us: int
    bytes: int
    errors: _Errors
    latency_us: _LatencyUs
    statuses: dict[str, int] = {}
    retry_after_missing: int = 0

    @property
    def duration_s(self) -> float:
        return self.duration_us / 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_us else 0.0

    @property
    def socket_errors(self) -> int:
        e = self.errors
        return e.connect + e.read + e.write + e.timeout

    @property
    def non_2xx(self) -> int:
        """wrk's "status" errors: responses outside 2xx and 3xx."""
        return self.errors.status

    @property
    def latency(self) -> Latency:
        us = self.latency_us
        return Latency(
            p50_ms=us.p50 / 1000,
            p90_ms=us.p90 / 1000,
            p99_ms=us.p99 / 1000,
            mean_ms=us.mean / 1000,
            max_ms=us.max / 1000,
        )


_decoder = msgspec.json.Decoder(WrkOutput)


def parse_wrk_output(stdout: str) -> WrkOutput:
    """The result line of a wrk run's output."""
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            try:
                return _decoder.decode(line[len(_MARKER) :])
            except msgspec.DecodeError as exc:
                raise WrkError(f"unreadable wrk result line ({exc}): {line}") from exc
    raise WrkError(f"wrk printed no result line:\n{stdout[-2000:]}")


def run_wrk(
    url: str,
    *,
    scenario: str,
    env: Mapping[str, str],
    connections: int,
    duration_s: float,
    cpus: str | None = None,
    threads: int = 1,
) -> WrkOutput:
    """Run scenarios/<scenario>.lua against `url`; wrk is stopped if this is interrupted."""
    binary = shutil.which("wrk")
    if binary is None:
        raise WrkError("wrk is not installed (apt-get install wrk)")
    argv = [
        binary,
        "-t",
        str(min(threads, connections)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCENARIOS / f"{scenario}.lua"),
        url,
    ]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=duration_s + 60)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {stderr.strip() or stdout[-2000:]}")
    return parse_wrk_output(stdout)
