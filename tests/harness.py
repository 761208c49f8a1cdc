"""Real processes for the tests: redis-server, the fake provider, Keyway under Granian, haproxy.

Each helper starts the real binary on a free port, waits until it answers, and stops it on
exit. Logs go to files under the pytest tmp dir so a failing test can show them.
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
from typing import Any

import msgspec

from gateway.providers.transport import PROXY_VARIABLES

__all__ = [
    "Proc",
    "free_port",
    "start_fake_provider",
    "start_gateway",
    "start_haproxy",
    "start_redis",
    "wait_http",
    "wait_port",
]

ROOT = Path(__file__).resolve().parent.parent


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


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


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


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout_s)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


def _spawn(
    name: str, argv: list[str], log_dir: Path, port: int, env: Mapping[str, str] | None = None
) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child owns it
    # every process talks to 127.0.0.1 only: a developer's egress proxy must not catch that
    inherited = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    full_env = {**inherited, **(env or {})}
    popen = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=ROOT, start_new_session=True
    )
    return Proc(name=name, popen=popen, log_path=log_path, port=port)


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server is not installed: the integration tests need it (apt-get install redis-server)"
        )
    return path


def start_redis(log_dir: Path, *, port: int | None = None, cluster: bool = False) -> Proc:
    port = port or (free_cluster_port() if cluster else free_port())
    workdir = log_dir / f"redis-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    if cluster:
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(workdir / "nodes.conf"),
                 "--cluster-node-timeout", "2000"]  # fmt: skip
    proc = _spawn("redis", argv, log_dir, port)
    wait_port(port)
    return proc


def start_fake_provider(
    log_dir: Path, *, port: int | None = None, args: list[str] | None = None
) -> Proc:
    port = port or free_port()
    argv = [sys.executable, "-m", "gateway.fake_provider", "--host", "127.0.0.1", "--port", str(port),
            *(args or [])]  # fmt: skip
    proc = _spawn("fake-provider", argv, log_dir, port)
    wait_http(f"{proc.url}/_fake/stats", proc=proc)
    return proc


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
    proc = _spawn("keyway", argv, log_dir, port, full_env)
    wait_http(f"{proc.url}/readyz", proc=proc)
    return proc


def start_haproxy(log_dir: Path, backends: list[int], *, port: int | None = None) -> Proc:
    binary = shutil.which("haproxy")
    if binary is None:
        raise RuntimeError("haproxy is not installed: apt-get install haproxy")
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
    proc = _spawn("haproxy", [binary, "-db", "-f", str(cfg_path)], log_dir, port)
    wait_port(port)
    return proc


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
    """`nodes` redis-server processes in cluster mode, joined with `redis-cli --cluster create`."""
    procs = [start_redis(log_dir, cluster=True) for _ in range(nodes)]
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not installed (it comes with redis-server / redis-tools)")
    addrs = [f"127.0.0.1:{p.port}" for p in procs]
    subprocess.run(
        [cli, "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
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
        time.sleep(0.2)
    raise TimeoutError("the redis cluster did not reach cluster_state:ok")
