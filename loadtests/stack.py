"""Starts and stops the processes of a load test: redis-server, fake providers, Keyway, haproxy.

Every process runs in its own session, so a Ctrl-C in the terminal reaches only run.py, which
then stops them all in reverse order (SIGTERM to the process group, SIGKILL if it lingers).
Each one logs to a file under the run's log directory, whose tail is shown when it fails to
start. With pinning on, Keyway runs on the gateway CPU and everything else on the load CPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.providers.transport import PROXY_VARIABLES

__all__ = ["ROOT", "Pinning", "Proc", "Stack", "StartupError", "free_port"]

ROOT = Path(__file__).resolve().parent.parent


class StartupError(RuntimeError):
    """A process exited or did not answer in time; the message holds its log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Pinning:
    """CPU lists for taskset: Keyway on one, the load generator, upstream and Redis on the other."""

    gateway: str | None = None
    load: str | None = None

    @classmethod
    def for_machine(cls, enabled: bool = True) -> Pinning:
        """Gateway on CPU 0 and the rest on CPU 1 when there are two CPUs or more."""
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        return cls(gateway=str(cpus[0]), load=str(cpus[1]))

    def describe(self) -> str:
        if self.gateway is None:
            return "not pinned (everything shares every CPU)"
        return (
            f"Keyway pinned to CPU {self.gateway} (taskset -c {self.gateway}); wrk, the asyncio "
            f"client, the fake providers, redis-server and haproxy pinned to CPU {self.load}"
        )

    def prefix(self, cpus: str | None) -> list[str]:
        return ["taskset", "-c", cpus] if cpus is not None else []

    def pin_self(self) -> None:
        """Move this process (the asyncio client) to the load CPU."""
        if self.load is not None:
            os.sched_setaffinity(0, {int(self.load)})


@dataclass
class Proc:
    """One started process, the leader of its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)
        except ProcessLookupError:
            pass


class Stack:
    """The processes of one run; `close()` (or leaving the `with` block) stops them all."""

    def __init__(self, log_dir: Path, pinning: Pinning) -> None:
        self.log_dir = log_dir
        self.pinning = pinning
        self.procs: list[Proc] = []

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self.procs:
            proc = self.procs.pop()
            # a second Ctrl-C must not leave the remaining processes running
            with contextlib.suppress(Exception, KeyboardInterrupt):
                proc.stop()

    def _spawn(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        cpus: str | None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{port}.log"
        full_argv = [*self.pinning.prefix(cpus), *argv]
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                full_argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                # all traffic is loopback: an egress proxy of the shell would change what Keyway
                # measures (it makes Keyway choose the proxy-capable client)
                env={
                    **{k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES},
                    **(env or {}),
                },
                start_new_session=True,
            )
        proc = Proc(name=name, popen=popen, log_path=log_path, port=port, argv=full_argv)
        self.procs.append(proc)
        return proc

    def _wait(self, proc: Proc, url: str | None, timeout_s: float = 30.0) -> None:
        """Until `url` answers 200 (or, without a url, the port accepts connections)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise StartupError(
                    f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
                )
            try:
                if url is None:
                    with socket.create_connection(("127.0.0.1", proc.port), timeout=0.5):
                        return
                else:
                    with urllib.request.urlopen(url, timeout=1) as r:
                        if r.status == 200:
                            return
            except OSError:
                pass
            time.sleep(0.05)
        raise StartupError(f"{proc.name} not ready after {timeout_s}s:\n{proc.log_tail()}")

    def start_redis(self) -> Proc:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StartupError("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        workdir = self.log_dir / f"redis-{port}"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
        proc = self._spawn("redis", argv, port, cpus=self.pinning.load)
        self._wait(proc, None)
        return proc

    def start_fake_provider(self, name: str, args: list[str]) -> Proc:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gateway.fake_provider",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ]
        proc = self._spawn(name, argv, port, cpus=self.pinning.load)
        self._wait(proc, f"{proc.url}/_fake/health")
        return proc

    def start_gateway(self, name: str, config_path: Path, redis_url: str, workers: int) -> Proc:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config_path),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        env = {"REDIS_URL": redis_url, "KEYWAY_LOG_LEVEL": "warning"}
        proc = self._spawn(name, argv, port, cpus=self.pinning.gateway, env=env)
        self._wait(proc, f"{proc.url}/readyz", timeout_s=60.0)
        return proc

    def start_haproxy(self, backends: list[Proc]) -> Proc:
        """haproxy round-robin over the replicas, keep-alive on both sides (the test harness
        closes server connections after each request; a load test must not pay for that)."""
        binary = shutil.which("haproxy")
        if binary is None:
            raise StartupError("haproxy is not installed (apt-get install haproxy)")
        port = free_port()
        servers = "\n".join(
            f"    server r{i} 127.0.0.1:{b.port} check inter 1s fall 2 rise 1"
            for i, b in enumerate(backends)
        )
        cfg_path = self.log_dir / f"haproxy-{port}.cfg"
        cfg_path.write_text(
            f"""global
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend keyway
backend keyway
    balance roundrobin
    option httpchk GET /readyz
{servers}
"""
        )
        proc = self._spawn(
            "haproxy", [binary, "-db", "-f", str(cfg_path)], port, cpus=self.pinning.load
        )
        self._wait(proc, f"{proc.url}/readyz")
        return proc
