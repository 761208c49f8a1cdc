"""`keyway demo`: the fake provider and the gateway on the demo config, in one command."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import resources
from pathlib import Path

from gateway.config_load import ConfigError, check_config, report

__all__ = ["DEMO_HOST", "DEMO_PORT", "FAKE_HOST", "FAKE_PORT", "demo_config_text", "run_demo"]

DEMO_HOST = "127.0.0.1"
"""Where the demo gateway listens unless --host says otherwise."""
DEMO_PORT = 8080
FAKE_HOST = "127.0.0.1"
"""The fake provider's address; demo.yaml's base_urls point there."""
FAKE_PORT = 9100


def demo_config_text(fake_port: int = FAKE_PORT) -> str:
    """demo.yaml with its one placeholder, `${FAKE_PORT}`, filled in."""
    template = resources.files("gateway").joinpath("demo.yaml").read_text("utf-8")
    return template.replace("${FAKE_PORT}", str(fake_port))


def _wait_http(url: str, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_demo(*, port: int = DEMO_PORT, fake_port: int = FAKE_PORT, host: str = DEMO_HOST) -> int:
    from gateway.server import ListenError, check_listen, serve

    if port == fake_port:
        print("keyway demo: --port and --fake-port must differ", file=sys.stderr)
        return 2
    for where, number, flag in ((host, port, "--port"), (FAKE_HOST, fake_port, "--fake-port")):
        try:
            check_listen(where, number)
        except ListenError as exc:
            print(f"keyway: {exc} (choose another with {flag})", file=sys.stderr)
            return 1
    workdir = Path(tempfile.mkdtemp(prefix="keyway-demo-"))
    config_path = workdir / "demo.yaml"
    config_path.write_text(demo_config_text(fake_port), encoding="utf-8")
    os.environ["KEYWAY_HOST"] = host
    os.environ["KEYWAY_PORT"] = str(port)
    os.environ.pop("REDIS_URL", None)
    try:
        cfg = check_config(config_path)
    except ConfigError as exc:
        print(report(exc, config_path), file=sys.stderr)
        return 2
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.fake_provider",
            "--host",
            FAKE_HOST,
            "--port",
            str(fake_port),
        ]
    )
    try:
        if not _wait_http(f"http://{FAKE_HOST}:{fake_port}/_fake/stats"):
            print("keyway demo: the fake provider did not start", file=sys.stderr)
            return 1
        shown = f"[{host}]" if ":" in host else host
        print(
            f"\nKeyway demo: gateway on http://{shown}:{port}/v1 "
            f"(fake provider on {FAKE_HOST}:{fake_port}, embedded store)\n"
            f"  client key: sk-keyway-demo   models: {', '.join(cfg.models)}\n"
            f"  config: {config_path}\n",
            flush=True,
        )
        try:
            serve(config_path, cfg)
        except ListenError as exc:
            print(f"keyway: {exc} (choose another with --port)", file=sys.stderr)
            return 1
        return 0
    finally:
        fake.terminate()
        try:
            fake.wait(timeout=5)
        except subprocess.TimeoutExpired:
            fake.kill()
