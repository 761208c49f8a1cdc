"""The test harness never leaves a process behind: `Proc.stop()` ends the whole process group,
a start that fails stops what it started, and a process a test forgets is stopped when pytest's
session ends. Missing binaries skip locally and fail in CI.

The processes here are small Python scripts (a leader and the grandchild it starts), so no
Redis or network is needed; `tests/integration/test_process_cleanup.py` does the same with real
gateways behind haproxy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import harness
from tests.harness import ROOT, Proc, group_members, require_binary, spawned

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process state from Linux's /proc"
)

# A leader that starts a grandchild and sleeps. The grandchild reports its PID through a file
# once it runs; a deaf one ignores SIGTERM first (only SIGKILL ends it, as with a wedged worker).
LEADER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", *sys.argv[1:]])
time.sleep(3600)
"""
GRANDCHILD = """
import os, signal, sys, time
if sys.argv[2] == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(3600)
"""


def running(pid: int, mark: str | None) -> bool:
    """`pid` is a live (not zombie) process the harness started: it carries the group's mark."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2]
    return state not in "ZX" and f"{harness.MARK}={mark}".encode() in environ


def wait_for(path: Path, deadline_s: float = 20.0) -> str:
    """The file's content once it exists; the deadline only bounds a hang."""
    end = time.monotonic() + deadline_s
    while not path.exists():
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear within {deadline_s}s")
        time.sleep(0.02)
    return path.read_text()


def start_family(
    tmp_path: Path, *, deaf: bool = False, ready_fails: bool = False
) -> tuple[Proc, int]:
    """A leader and its grandchild, through the harness; returns the grandchild's PID too.

    `deaf`: the grandchild ignores SIGTERM. `ready_fails`: the readiness check raises once both
    run.
    """
    pid_file = tmp_path / f"grandchild-{len(spawned())}.pid"
    grandchild: list[int] = []

    def ready(proc: Proc) -> None:
        grandchild.append(int(wait_for(pid_file)))
        assert running(grandchild[0], proc.mark)
        if ready_fails:
            raise RuntimeError("not ready")

    argv = [sys.executable, "-c", LEADER, GRANDCHILD, str(pid_file), "deaf" if deaf else "-"]
    proc = harness._spawn("family", argv, tmp_path, 0, ready=ready)
    return proc, grandchild[0]


def test_stop_ends_the_leader_and_its_grandchild(tmp_path: Path) -> None:
    proc, grandchild = start_family(tmp_path)
    assert set(proc.members()) == {proc.pgid, grandchild}
    assert proc.stop() == -signal.SIGTERM
    assert not running(grandchild, proc.mark)
    assert group_members(proc.pgid, proc.mark) == []
    assert not proc.alive()


def test_stop_kills_the_grandchild_that_ignores_sigterm(tmp_path: Path) -> None:
    proc, grandchild = start_family(tmp_path, deaf=True)
    assert set(proc.members()) == {proc.pgid, grandchild}
    proc.stop(timeout_s=0.5)  # SIGTERM ends the leader only; SIGKILL then ends the grandchild
    assert proc.popen.returncode == -signal.SIGTERM
    assert not running(grandchild, proc.mark)
    assert group_members(proc.pgid, proc.mark) == []
    assert not proc.alive()


def test_stop_kills_what_a_leader_killed_with_sigkill_left_behind(tmp_path: Path) -> None:
    proc, grandchild = start_family(tmp_path, deaf=True)
    os.kill(proc.pgid, signal.SIGKILL)  # the leader alone dies: its grandchild is orphaned
    proc.popen.wait(timeout=10)
    assert running(grandchild, proc.mark), "the orphan still runs, in the leader's group"
    assert proc.alive()
    proc.stop(timeout_s=0.5)
    assert not running(grandchild, proc.mark)
    assert group_members(proc.pgid, proc.mark) == []


def test_kill_ends_the_whole_group(tmp_path: Path) -> None:
    proc, grandchild = start_family(tmp_path, deaf=True)
    proc.kill()
    assert proc.popen.returncode == -signal.SIGKILL
    assert not running(grandchild, proc.mark)
    assert group_members(proc.pgid, proc.mark) == []


def test_a_start_whose_readiness_check_fails_stops_its_group(tmp_path: Path) -> None:
    before = len(spawned())
    with pytest.raises(RuntimeError, match="not ready"):
        start_family(tmp_path, ready_fails=True)
    (proc,) = spawned()[before:]
    assert proc.popen.returncode is not None
    assert group_members(proc.pgid, proc.mark) == []
    grandchild = int((tmp_path / f"grandchild-{before}.pid").read_text())
    assert not running(grandchild, proc.mark)


def test_stop_on_failure_stops_the_started_when_a_later_start_fails(tmp_path: Path) -> None:
    before = len(spawned())
    with pytest.raises(RuntimeError, match="the third"), harness.stop_on_failure() as started:
        for _ in range(2):
            started.enter_context(start_family(tmp_path)[0])
        raise RuntimeError("the third one does not start")
    first, second = spawned()[before:]
    for proc in (first, second):
        assert proc.popen.returncode is not None
        assert group_members(proc.pgid, proc.mark) == []


def test_stop_on_failure_hands_the_started_to_the_caller_on_success(tmp_path: Path) -> None:
    with harness.stop_on_failure() as started:
        proc = started.enter_context(start_family(tmp_path)[0])
    assert proc.alive(), "a completed start keeps its processes running"
    proc.stop(timeout_s=0.5)
    assert not proc.alive()


def test_stop_leftovers_at_exit_ignores_a_forked_copy_of_the_registry(tmp_path: Path) -> None:
    proc, grandchild = start_family(tmp_path)
    try:
        # what a child forked by a test would run at exit: it must not stop pytest's processes
        pid = os.fork()
        if pid == 0:
            os._exit(len(harness.stop_leftovers()))
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert running(grandchild, proc.mark)
    finally:
        proc.stop(timeout_s=0.5)


LEAKY_TEST = """
import os
from pathlib import Path

from tests.harness import start_fake_provider


def test_forgets_to_stop_its_server(tmp_path):
    proc = start_fake_provider(tmp_path)  # Granian: a leader and a worker, never stopped
    members = proc.members()
    assert len(members) >= 2, members
    Path(os.environ["LEAK_REPORT"]).write_text(" ".join([proc.mark, *map(str, members)]))
"""


def test_a_process_a_test_forgot_does_not_outlive_pytest(tmp_path: Path) -> None:
    """A pytest run with tests/conftest.py whose test leaves a real Granian server running."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "leak-report"
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # no CI guard in the inner run
    env["LEAK_REPORT"] = str(report)
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
         "--basetemp", str(tmp_path / "inner"), str(tmp_path / "test_leaky.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert inner.returncode == 0, inner.stdout + inner.stderr
    mark, *members = report.read_text().split()
    pids = [int(m) for m in members]
    assert "leaked process stopped at session end: fake-provider" in inner.stdout, inner.stdout
    assert [pid for pid in pids if running(pid, mark)] == []
    assert group_members(pids[0], mark) == []


def test_a_missing_binary_skips_locally_with_an_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-binary-kw not installed: apt-get"):
        require_binary("no-such-binary-kw", "apt-get install no-such-binary-kw")


def test_a_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-binary-kw not installed: apt-get"):
        require_binary("no-such-binary-kw", "apt-get install no-such-binary-kw")


def test_a_binary_on_the_path_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert require_binary("sh", "apt-get install dash") == shutil.which("sh")
