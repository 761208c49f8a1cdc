"""Session-wide real processes: a redis-server and the fake provider, started by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import FakeControl, Proc, start_fake_provider, start_redis


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_proc(logs: Path) -> Iterator[Proc]:
    proc = start_redis(logs)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_url(redis_proc: Proc) -> str:
    return f"redis://127.0.0.1:{redis_proc.port}/0"


@pytest.fixture(scope="session")
def fake_proc(logs: Path) -> Iterator[Proc]:
    proc = start_fake_provider(logs)
    yield proc
    proc.stop()


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
    if "tests/integration/" not in report.nodeid and "tests/e2e/" not in report.nodeid:
        return
    if (report.when == "call" and report.passed) or (report.when == "call" and report.failed):
        _integration["ran"] += 1
    elif report.skipped:
        _integration["skipped"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not os.environ.get("CI") or session.config.option.collectonly:
        return
    if _integration["ran"] == 0 or _integration["skipped"]:
        print(
            f"\nCI: integration/e2e tests ran={_integration['ran']} skipped={_integration['skipped']}: "
            "the real-Redis tests must all run in CI",
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def redis_cluster(logs: Path) -> Iterator[str]:
    """A real three-node Redis Cluster; yields its `redis+cluster://` URL."""
    from tests.harness import start_redis_cluster

    procs = start_redis_cluster(logs / "cluster")
    yield f"redis+cluster://127.0.0.1:{procs[0].port}"
    for p in procs:
        p.stop()
