"""Real processes for the tests: redis-server, the fake provider, Keyway under Granian, haproxy.

Each helper starts the real binary on a free port, waits until it answers, and hands back a
`Proc`. Logs go to files under the pytest tmp dir so a failing test can show them.

No process may outlive the test that started it, whatever fails:

- every process runs in a process group of its own, and `Proc.stop()` ends the whole group
  (SIGTERM, a grace period, then SIGKILL), so Granian's workers never outlive their leader;
- a helper whose process does not come up stops it before raising;
- a `Proc` is a context manager, and `stop_on_failure()` starts several as one: if one of them
  (or anything else in the block) fails, the ones already started are stopped;
- every `Proc` is recorded: `stop_leftovers()` (tests/conftest.py calls it when the session
  ends, and at exit) stops whatever is still running, so nothing outlives pytest.

A binary the tests need and cannot find skips the test locally, with an install hint, and fails
it in CI (`CI` set), where every binary must be there.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import pytest

from gateway.providers.transport import PROXY_VARIABLES

__all__ = [
    "Proc",
    "free_port",
    "group_members",
    "in_ci",
    "redis_binary",
    "redis_cli_binary",
    "require_binary",
    "spawned",
    "start_fake_provider",
    "start_gateway",
    "start_haproxy",
    "start_redis",
    "start_redis_cluster",
    "stop_leftovers",
    "stop_on_failure",
    "wait_http",
    "wait_port",
]

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """The same test as tests/conftest.py's CI guard: `CI` set to anything non-empty."""
    return bool(os.environ.get("CI"))


def require_binary(name: str, install: str) -> str:
    """The path of `name`; if it is missing, skip (locally) or fail (in CI) the calling test.

    `install` is the hint, e.g. "apt-get install haproxy".
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not installed: {install}"
    if in_ci():
        pytest.fail(f"{message} (CI must provide every binary the tests use)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_port(port: int, timeout_s: float = 20.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s\n{tail}")


def wait_http(url: str, timeout_s: float = 30.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    tail = proc.log_tail() if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout_s}s ({last})\n{tail}")


# -- processes and their groups -------------------------------------------------------------------


# every process the harness starts, and everything those start, inherit this variable: it tells
# our processes from strangers that got a reused PID (pid_max may be as low as 32768)
MARK = "KEYWAY_TEST_PROC"


def group_members(pgid: int, mark: str | None = None) -> list[int]:
    """The PIDs of the live (not zombie) processes in process group `pgid`.

    `mark`: only those whose environment holds `KEYWAY_TEST_PROC=<mark>`.
    """
    proc_fs = Path("/proc")
    if not (proc_fs / "self" / "stat").exists():  # no procfs: ask the kernel if anyone is left
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    tag = f"{MARK}={mark}".encode()
    members = []
    for entry in proc_fs.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
            state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(pgrp) != pgid or state in ("Z", "X"):
                continue
            if mark is not None and tag not in (entry / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:  # gone meanwhile, or not ours to read
            continue
        members.append(int(entry.name))
    return members


@dataclass(eq=False)
class Proc:
    """A process started by the harness: the leader of a process group of its own."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int
    extra: dict[str, Any] = field(default_factory=dict)
    mark: str | None = field(default=None, repr=False)  # its group's KEYWAY_TEST_PROC value
    stopped: bool = field(default=False, repr=False)  # the whole group is known to be gone

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pgid(self) -> int:
        return self.popen.pid  # start_new_session: the leader's PID names the group

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def members(self) -> list[int]:
        """The live processes of this group: the leader and whatever it started (the workers)."""
        if self.stopped:
            return []
        return group_members(self.pgid, self.mark)

    def alive(self) -> bool:
        """The leader or anything else in its group still runs."""
        if self.popen.poll() is None:
            return True
        return bool(self.members())

    def signal(self, sig: int) -> None:
        """Send `sig` to the whole group while its leader runs."""
        if self.popen.poll() is None:
            os.killpg(self.pgid, sig)

    def _signal_group(self, sig: int) -> None:
        # safe against PID reuse: the group's ID stays taken while its leader is unreaped or any
        # member lives, and members() only counts processes that carry this group's mark
        if self.popen.poll() is None or self.members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)

    def _wait_group(self, timeout_s: float) -> bool:
        """Wait until the leader is reaped and no one is left in the group; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.popen.poll() is not None and not self.members():
                self.stopped = True
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """Stop the whole group: SIGTERM, up to `timeout_s` to exit, then SIGKILL.

        Anything left in the group after its leader exited (a worker the leader did not take
        down, a leader killed with -9) is stopped too. Idempotent; returns the leader's code.
        """
        if not self.alive():
            self.stopped = True
            return self.popen.returncode
        self._signal_group(signal.SIGTERM)
        if not self._wait_group(timeout_s):
            self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole group (a crash, as far as the processes can tell) and reap it."""
        self._signal_group(signal.SIGKILL)
        if not self._wait_group(10.0):
            raise RuntimeError(
                f"{self.name} (process group {self.pgid}) survived SIGKILL: "
                f"{self.members()} still run"
            )

    def __enter__(self) -> Proc:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# every Proc this Python process started, in order: the last-resort sweep and the tests read it
_SPAWNED: list[Proc] = []
_OWNER = os.getpid()  # a forked child inherits _SPAWNED, but those processes are not its own


def spawned() -> list[Proc]:
    """Every process the harness started in this Python process, oldest first."""
    return list(_SPAWNED)


def stop_leftovers(*, kill: bool = False) -> list[Proc]:
    """Stop every process the harness started that still runs; returns them (a leak report).

    `kill`: SIGKILL at once, without waiting (for a signal handler on the way out).
    """
    if os.getpid() != _OWNER:
        return []
    left = [p for p in _SPAWNED if p.alive()]
    for proc in reversed(left):
        if kill:
            proc._signal_group(signal.SIGKILL)
            continue
        with contextlib.suppress(Exception):
            proc.stop(timeout_s=5.0)
    return left


atexit.register(stop_leftovers)


@contextlib.contextmanager
def stop_on_failure() -> Iterator[contextlib.ExitStack]:
    """Start several processes as one: `started.enter_context(start_x(...))` for each.

    If anything in the block raises (a start, a readiness wait, a skip for a missing binary),
    the processes entered so far are stopped, newest first, before the exception goes on. If the
    block completes they keep running and belong to the caller.
    """
    with contextlib.ExitStack() as started:
        yield started
        started.pop_all()


def _spawn(
    name: str,
    argv: list[str],
    log_dir: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    *,
    ready: Callable[[Proc], None] | None = None,
) -> Proc:
    """Start `argv` in a new session (its own process group), then wait for `ready(proc)`.

    If `ready` raises, the process group is stopped before the exception goes on.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    # every process talks to 127.0.0.1 only: a developer's egress proxy must not catch that
    inherited = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    mark = uuid.uuid4().hex
    full_env = {**inherited, **(env or {}), MARK: mark}
    with open(log_path, "wb") as log:  # the child has its own copy of the descriptor
        popen = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=ROOT,
            start_new_session=True,
        )
    proc = Proc(name=name, popen=popen, log_path=log_path, port=port, mark=mark)
    _SPAWNED.append(proc)
    if ready is not None:
        with stop_on_failure() as started:
            started.enter_context(proc)
            ready(proc)
    return proc


def redis_binary() -> str:
    return require_binary("redis-server", "apt-get install redis-server")


def redis_cli_binary() -> str:
    return require_binary("redis-cli", "apt-get install redis-tools (redis-server brings it)")


def start_redis(log_dir: Path, *, port: int | None = None, cluster: bool = False) -> Proc:
    binary = redis_binary()
    port = port or (free_cluster_port() if cluster else free_port())
    workdir = log_dir / f"redis-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    if cluster:
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                 "--cluster-node-timeout", "2000"]  # fmt: skip
    return _spawn("redis", argv, log_dir, port, ready=lambda p: wait_port(port, proc=p))


def start_fake_provider(
    log_dir: Path, *, port: int | None = None, args: list[str] | None = None
) -> Proc:
    port = port or free_port()
    argv = [sys.executable, "-m", "gateway.fake_provider", "--host", "127.0.0.1", "--port", str(port),
            *(args or [])]  # fmt: skip
    return _spawn(
        "fake-provider",
        argv,
        log_dir,
        port,
        ready=lambda p: wait_http(f"{p.url}/_fake/stats", proc=p),
    )


def start_gateway(
    log_dir: Path,
    config_text: str,
    *,
    redis_url: str | None,
    port: int | None = None,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Proc:
    port = port or free_port()
    config_path = log_dir / f"keyway-{port}.yaml"
    log_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(config_text)
    full_env = {"KEYWAY_LOG_LEVEL": "info", **(env or {})}
    if redis_url:
        full_env["REDIS_URL"] = redis_url
    else:
        full_env["REDIS_URL"] = ""
    argv = [sys.executable, "-m", "gateway", "serve", "--config", str(config_path),
            "--port", str(port), "--workers", str(workers)]  # fmt: skip
    return _spawn(
        "keyway",
        argv,
        log_dir,
        port,
        full_env,
        ready=lambda p: wait_http(f"{p.url}/readyz", proc=p),
    )


def start_haproxy(
    log_dir: Path,
    backends: list[int],
    *,
    port: int | None = None,
    binary: str = "haproxy",
    forwardfor: bool = False,
) -> Proc:
    """haproxy round-robin over `backends`; `binary` is looked up on PATH (or a path).

    `forwardfor`: append the client's address to X-Forwarded-For (one trusted hop).
    """
    path = require_binary(binary, "apt-get install haproxy")
    port = port or free_port()
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
        for i, p in enumerate(backends)
    )
    cfg = f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    option http-server-close
{"    option forwardfor" if forwardfor else ""}
frontend fe
    bind 127.0.0.1:{port}
    default_backend keyway
backend keyway
    balance roundrobin
    option httpchk GET /readyz
{servers}
"""
    cfg_path = log_dir / f"haproxy-{port}.cfg"
    log_dir.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(cfg)
    argv = [path, "-db", "-f", str(cfg_path)]
    return _spawn("haproxy", argv, log_dir, port, ready=lambda p: wait_port(port, proc=p))


class FakeControl:
    """The fake provider's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = msgspec.json.encode(body) if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
        return msgspec.json.decode(raw) if raw else None

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def fault(self, key: str, mode: str, count: int | None = None, **extra: Any) -> None:
        self._call("POST", "/_fake/faults", {"key": key, "mode": mode, "count": count, **extra})

    def clear_faults(self) -> None:
        self._call("DELETE", "/_fake/faults")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_fake/stats")
        return result

    def requests_by_key(self) -> dict[str, int]:
        return dict(self.stats()["requests_by_key"])

    def last_request(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_fake/last_request")
        return result


def make_config(
    fake_url: str,
    *,
    keys: int = 3,
    key_rpm: int | None = None,
    key_extra: str = "",
    client_rpm: int | None = None,
    client_tpm: int | None = None,
    extra_clients: str = "",
    routing: str = "",
    key_prefix: str = "sk-fake-test",
) -> str:
    """A config with one OpenAI-compatible pool of `keys` keys on the fake provider."""
    rpm = f", rpm: {key_rpm}" if key_rpm else ""
    key_lines = "\n".join(
        f"      - {{id: k{i}, secret: {key_prefix}-{i:04d}{rpm}{key_extra}}}"
        for i in range(1, keys + 1)
    )
    crpm = f", rpm: {client_rpm}" if client_rpm else ""
    ctpm = f", tpm: {client_tpm}" if client_tpm else ""
    return f"""
providers:
  fake:
    kind: openai-compatible
    base_url: {fake_url}/v1
    timeout_s: 10
    keys:
{key_lines}
  fake-anthropic:
    kind: anthropic
    base_url: {fake_url}
    timeout_s: 10
    keys:
      - {{id: a1, secret: sk-ant-fake-test-0001}}
models:
  gpt-4o-mini:
    deployments:
      - {{provider: fake, model: gpt-4o-mini}}
  renamed:
    deployments:
      - {{provider: fake, model: gpt-4o}}
  text-embedding-3-small:
    deployments:
      - {{provider: fake, model: text-embedding-3-small}}
  claude-haiku:
    deployments:
      - {{provider: fake-anthropic, model: claude-3-5-haiku-latest}}
clients:
  - {{id: team-a, key: sk-client-a{crpm}{ctpm}, models: ["*"]}}
  - {{id: team-b, key: sk-client-b, models: [text-embedding-3-small]}}
{extra_clients}
prices:
  gpt-4o-mini: {{input: 0.15, output: 0.60}}
routing:
  cooldown_s: 2
{routing}
"""


def start_redis_cluster(log_dir: Path, nodes: int = 3) -> list[Proc]:
    """`nodes` redis-server processes in cluster mode, joined with `redis-cli --cluster create`.

    All or nothing: if a node, the join or the wait for `cluster_state:ok` fails, the nodes
    already started are stopped.
    """
    cli = redis_cli_binary()
    with stop_on_failure() as started:
        procs = [started.enter_context(start_redis(log_dir, cluster=True)) for _ in range(nodes)]
        addrs = [f"127.0.0.1:{p.port}" for p in procs]
        subprocess.run(
            [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while True:
            states = [
                subprocess.run(
                    [cli, "-p", str(p.port), "cluster", "info"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout
                for p in procs
            ]
            if all("cluster_state:ok" in s for s in states):
                return procs
            if time.monotonic() > deadline:
                raise TimeoutError("the redis cluster did not reach cluster_state:ok")
            time.sleep(0.2)
