"""Session-wide real processes: a redis-server and the fake provider, started by the tests.

Processes never outlive pytest: fixtures stop theirs on teardown (test passed or not), `procs`
stops those a test starts itself, and when the session ends (or pytest is sent SIGTERM) whatever
the harness started and is still running is stopped and reported.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from tests.harness import (
    FakeControl,
    Proc,
    in_ci,
    start_fake_provider,
    start_redis,
    start_redis_cluster,
    stop_leftovers,
)


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_proc(logs: Path) -> Iterator[Proc]:
    with start_redis(logs) as proc:
        yield proc


@pytest.fixture(scope="session")
def redis_url(redis_proc: Proc) -> str:
    return f"redis://127.0.0.1:{redis_proc.port}/0"


@pytest.fixture(scope="session")
def fake_proc(logs: Path) -> Iterator[Proc]:
    with start_fake_provider(logs) as proc:
        yield proc


@pytest.fixture()
def procs() -> Iterator[contextlib.ExitStack]:
    """The processes a test starts itself: `gw = procs.enter_context(start_gateway(...))`.

    All are stopped, newest first, when the test ends, passed or failed, and also when a later
    start in the same test fails. Stopping one early (`gw.stop()`) is fine: stop is idempotent.
    """
    with contextlib.ExitStack() as stack:
        yield stack


@pytest.fixture()
def fake(fake_proc: Proc) -> FakeControl:
    control = FakeControl(fake_proc.url)
    control.reset()
    return control


@pytest.fixture()
def prefix(request: pytest.FixtureRequest) -> dict[str, str]:
    """A Redis key prefix of the test's own, so tests sharing one Redis never meet."""
    return {"KEYWAY_REDIS_PREFIX": f"t{os.getpid()}-{abs(hash(request.node.nodeid)) % 10**8}"}


# -- CI guard: a green run that skipped the real-Redis tests is a red run -------------------------

_integration = {"ran": 0, "skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not any(
        tier in report.nodeid for tier in ("tests/integration/", "tests/e2e/", "tests/clients/")
    ):
        return
    if (report.when == "call" and report.passed) or (report.when == "call" and report.failed):
        _integration["ran"] += 1
    elif report.skipped:
        _integration["skipped"] += 1


@pytest.hookimpl(trylast=True)  # after pytest's own teardown of the session's fixtures
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _stop_leftover_processes()
    if not in_ci() or session.config.option.collectonly:
        return
    if _integration["ran"] == 0 or _integration["skipped"]:
        print(
            f"\nCI: integration/e2e tests ran={_integration['ran']} skipped={_integration['skipped']}: "
            "the real-Redis tests must all run in CI",
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- nothing the tests start outlives pytest --------------------------------------------------------


def _stop_leftover_processes() -> None:
    """The safety net under the fixtures: stop (and name) every process still running."""
    for proc in stop_leftovers():
        print(
            f"\nleaked process stopped at session end: {proc.name} pid {proc.pgid} "
            f"({proc.log_path}); a test or fixture did not stop it"
        )


def _terminated(signum: int, frame: FrameType | None) -> None:
    """pytest itself is told to stop (a CI timeout): kill our process groups, then die as told.

    They run in sessions of their own, so a signal to pytest's process group never reaches them.
    A child forked by a test inherits this handler: it must not touch pytest's processes.
    """
    if os.getpid() == _PYTEST_PID:
        stop_leftovers(kill=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_PYTEST_PID = os.getpid()


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


@pytest.fixture(scope="session")
def redis_cluster(logs: Path) -> Iterator[str]:
    """A real three-node Redis Cluster; yields its `redis+cluster://` URL."""
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(p) for p in start_redis_cluster(logs / "cluster")]
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"
