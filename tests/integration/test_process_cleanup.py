"""A cluster start that fails half way leaves nothing running: the replicas already up (Granian
leaders and their workers) are stopped before the failure reaches the test.

The failure is the one a fresh machine without haproxy meets: replicas start, then haproxy is
not found (here: pointed at a binary that does not exist).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests import harness
from tests.harness import Proc, group_members, make_config, spawned
from tests.integration import test_replicas


def running(pid: int, mark: str | None) -> bool:
    """`pid` is a live (not zombie) process the harness started: it carries the group's mark."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat[stat.rindex(")") + 2]
    return state not in "ZX" and f"{harness.MARK}={mark}".encode() in environ


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")
def test_replicas_started_before_a_missing_haproxy_are_stopped(
    logs: Path,
    fake_proc: Proc,
    redis_url: str,
    prefix: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_start_haproxy = harness.start_haproxy
    up_when_haproxy_started: dict[int, list[int]] = {}  # replica group -> its live processes

    def start_missing_haproxy(log_dir: Path, backends: list[int]) -> Proc:
        for proc in spawned()[before:]:
            up_when_haproxy_started[proc.pgid] = proc.members()
        return real_start_haproxy(log_dir, backends, binary=str(logs / "no-such-haproxy"))

    monkeypatch.setattr(test_replicas, "start_haproxy", start_missing_haproxy)
    before = len(spawned())
    # what the test would own had the cluster come up; it stops them only after the checks
    with contextlib.ExitStack() as owner:
        # a missing binary skips the test locally and fails it in CI; either way the start ends
        outcome = (pytest.skip.Exception, pytest.fail.Exception)
        with pytest.raises(outcome, match="no-such-haproxy not installed: apt-get install haproxy"):
            test_replicas._cluster(owner, logs, make_config(fake_proc.url), redis_url, prefix, n=2)

        replicas = spawned()[before:]
        assert [p.name for p in replicas] == ["keyway", "keyway"], "haproxy never started"
        for proc in replicas:
            up = up_when_haproxy_started[proc.pgid]
            # each replica was a Granian leader and at least one worker, all running...
            assert proc.pgid in up and len(up) >= 2, up
            # ...and none of them is left: not the leader, not a worker, nothing in the group
            assert proc.popen.returncode is not None
            assert [pid for pid in up if running(pid, proc.mark)] == []
            assert group_members(proc.pgid, proc.mark) == []
