"""--peers: other LLM gateways on the same fake provider, for a same-run comparison.

Only gateways already installed are run; none is a dependency of Keyway. Install them in a
throw-away place::

    python -m venv /tmp/peers && /tmp/peers/bin/pip install 'litellm[proxy]' tensorzero
    npm install --prefix /tmp/portkey @portkey-ai/gateway

Where they are looked for: ``KW_PEERS_VENV`` (default ``/tmp/peers``) for LiteLLM's ``litellm``
command and a TensorZero gateway binary (``tensorzero-gateway``, also on the ``PATH``), and
``KW_PORTKEY_PREFIX`` (default ``/tmp/portkey``) for Portkey's ``node_modules``. Each peer gets
a config pointing at the 0 ms fake provider (no limits, no budgets: their defaults), runs pinned
on Keyway's CPU, and takes the same wrk chat scenario at the largest connection count. A peer
that is absent or does not start is listed with the reason; its failure never fails the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.bench import CHAT_PATH, Bench
from loadtests.results import PeerRun
from loadtests.stack import Proc, StartupError, free_port
from loadtests.topology import DIRECT_KEY, DIRECT_MODEL

__all__ = ["run_peers"]

PEER_KEY = "sk-peer-loadtest"
"""LiteLLM's master key, which wrk presents to it."""

_TZ_MODEL = "fake_" + DIRECT_MODEL.replace("-", "_").replace(".", "_")


def _venv() -> Path:
    return Path(os.environ.get("KW_PEERS_VENV", "/tmp/peers"))


def _portkey_prefix() -> Path:
    return Path(os.environ.get("KW_PORTKEY_PREFIX", "/tmp/portkey"))


@dataclass
class _Plan:
    """How to start one peer and what wrk sends it."""

    argv: list[str]
    port: int
    path: str
    """The chat completions path on the peer."""
    auth: str
    model: str
    ready_path: str
    version: str = ""
    env: dict[str, str] = field(default_factory=dict)
    headers: str = ""
    """Extra request headers for wrk, one "Name: value" a line."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def _dist_version(venv: Path, dist: str) -> str:
    for meta in venv.glob(f"lib/python*/site-packages/{dist}-*.dist-info"):
        return meta.name.removeprefix(f"{dist}-").removesuffix(".dist-info")
    return ""


def _litellm(fake_url: str, workdir: Path) -> _Plan | str:
    venv = _venv()
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        return f"not installed (no {binary}; python -m venv {venv} && {venv}/bin/pip install 'litellm[proxy]')"
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        f"""model_list:
  - model_name: {DIRECT_MODEL}
    litellm_params:
      model: openai/{DIRECT_MODEL}
      api_base: {fake_url}/v1
      api_key: {DIRECT_KEY}
general_settings:
  master_key: {PEER_KEY}
litellm_settings:
  drop_params: true
"""
    )
    return _Plan(
        argv=[
            *(str(binary), "--config", str(config), "--host", "127.0.0.1"),
            *("--port", str(port), "--num_workers", "1"),
        ],
        port=port,
        path=CHAT_PATH,
        auth=PEER_KEY,
        model=DIRECT_MODEL,
        ready_path="/health/liveliness",
        version=_dist_version(venv, "litellm"),
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"},
    )


def _tensorzero(fake_url: str, workdir: Path) -> _Plan | str:
    venv = _venv()
    candidates = [venv / "bin" / "tensorzero-gateway", shutil.which("tensorzero-gateway")]
    binary = next((Path(c) for c in candidates if c and Path(c).exists()), None)
    if binary is None:
        version = _dist_version(venv, "tensorzero")
        if version:
            return (
                f"the tensorzero {version} wheel is the client (with an in-process embedded "
                "gateway), not an HTTP server; the HTTP gateway ships as a Docker image or a "
                "Rust build (no tensorzero-gateway binary found)"
            )
        return f"not installed (no tensorzero-gateway in {venv}/bin or on PATH)"
    port = free_port()
    config = workdir / "tensorzero.toml"
    config.write_text(
        f"""[gateway]
bind_address = "127.0.0.1:{port}"
observability.enabled = false

[models.{_TZ_MODEL}]
routing = ["fake"]

[models.{_TZ_MODEL}.providers.fake]
type = "openai"
model_name = "{DIRECT_MODEL}"
api_base = "{fake_url}/v1/"
api_key_location = "env::OPENAI_API_KEY"
"""
    )
    return _Plan(
        argv=[str(binary), "--config-file", str(config)],
        port=port,
        path="/openai/v1/chat/completions",
        auth=DIRECT_KEY,
        model=f"tensorzero::model_name::{_TZ_MODEL}",
        ready_path="/health",
        env={"OPENAI_API_KEY": DIRECT_KEY},
    )


def _portkey(fake_url: str, workdir: Path) -> _Plan | str:
    node = shutil.which("node")
    package = _portkey_prefix() / "node_modules" / "@portkey-ai" / "gateway"
    entry = package / "build" / "start-server.js"
    if not entry.exists():
        return f"not installed (no {entry}; npm install --prefix {_portkey_prefix()} @portkey-ai/gateway)"
    if node is None:
        return "node is not installed"
    try:
        version = str(json.loads((package / "package.json").read_text()).get("version", ""))
    except (OSError, ValueError):
        version = ""
    port = free_port()
    return _Plan(
        argv=[node, str(entry), f"--port={port}", "--headless"],
        port=port,
        path=CHAT_PATH,
        # Portkey is stateless: the provider, its base URL and key come with each request
        auth=DIRECT_KEY,
        model=DIRECT_MODEL,
        ready_path="/",
        version=version,
        headers=f"x-portkey-provider: openai\nx-portkey-custom-host: {fake_url}/v1",
    )


_PLANNERS: dict[str, Callable[[str, Path], _Plan | str]] = {
    "LiteLLM": _litellm,
    "TensorZero": _tensorzero,
    "Portkey": _portkey,
}


def _start(bench: Bench, name: str, plan: _Plan, log_path: Path) -> Proc:
    argv = [*bench.pinning.prefix(bench.pinning.gateway), *plan.argv]
    # loopback only: an egress proxy of the shell must not sit between a peer and the fake
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(plan.env)
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Proc(name=name, popen=popen, log_path=log_path, port=plan.port, argv=argv)


def _wait_ready(proc: Proc, plan: _Plan, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{plan.port}{plan.ready_path}"
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise StartupError(f"exited with {proc.popen.returncode}: {proc.log_tail(5)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise StartupError(f"not ready after {timeout_s:.0f} s: {proc.log_tail(5)}")


def _one_request(plan: _Plan) -> None:
    """One chat completion before the load: a peer that cannot answer is skipped, with why."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {plan.auth}"}
    for line in plan.headers.splitlines():
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    body = json.dumps(
        {"model": plan.model, "messages": [{"role": "user", "content": "Say hi"}]}
    ).encode()
    req = urllib.request.Request(plan.url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()
    except urllib.error.HTTPError as exc:
        raise StartupError(f"HTTP {exc.code} to a first request: {exc.read()[:300]!r}") from exc


def run_peers(bench: Bench, out: Path, log: Callable[[str], None]) -> list[PeerRun]:
    """Each installed peer under the 0 ms chat load; the absent ones with the reason."""
    found = []
    fake = bench.topo.instant
    workdir = out / "logs" / "peers"
    workdir.mkdir(parents=True, exist_ok=True)
    connections = max(bench.opts.connections)
    for name, planner in _PLANNERS.items():
        plan = planner(fake.url, workdir)
        if isinstance(plan, str):
            log(f"peer {name}: skipped, {plan}")
            found.append(PeerRun(name=name, skipped=plan))
            continue
        log(f"peer {name} {plan.version}: starting")
        proc = _start(bench, name, plan, workdir / f"{name.lower()}.log")
        try:
            _wait_ready(proc, plan)
            _one_request(plan)
            run = bench.load_url(
                plan.url,
                plan.auth,
                plan.model,
                connections,
                pids=[proc.pid],
                headers=plan.headers,
                label=name,
            )
            found.append(PeerRun(name=name, version=plan.version, run=run))
        except Exception as exc:  # a peer's failure must not lose Keyway's report
            log(f"peer {name}: did not run ({type(exc).__name__}: {exc}); log {proc.log_path}")
            found.append(
                PeerRun(name=name, version=plan.version, skipped=f"did not run: {exc}"[:300])
            )
        finally:
            proc.stop()
    return found
