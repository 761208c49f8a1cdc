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

from gateway.config_load import ConfigError, load_config

__all__ = ["run_demo"]


def _wait_http(url: str, timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_demo(*, port: int, fake_port: int) -> int:
    template = resources.files("gateway").joinpath("demo.yaml").read_text("utf-8")
    config_text = template.replace("${FAKE_PORT}", str(fake_port))
    workdir = Path(tempfile.mkdtemp(prefix="keyway-demo-"))
    config_path = workdir / "demo.yaml"
    config_path.write_text(config_text, encoding="utf-8")
    os.environ["KEYWAY_PORT"] = str(port)
    os.environ.pop("REDIS_URL", None)
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.fake_provider",
            "--host",
            "127.0.0.1",
            "--port",
            str(fake_port),
        ]
    )
    try:
        if not _wait_http(f"http://127.0.0.1:{fake_port}/_fake/stats"):
            print("keyway demo: the fake provider did not start", file=sys.stderr)
            return 1
        try:
            cfg = load_config(config_path)
        except ConfigError as exc:
            print(f"keyway demo: {exc}", file=sys.stderr)
            return 2
        print(
            f"\nKeyway demo: gateway on http://127.0.0.1:{port}/v1 "
            f"(fake provider on :{fake_port}, embedded store)\n"
            f"  client key: sk-keyway-demo   models: {', '.join(cfg.models)}\n"
            f"  config: {config_path}\n",
            flush=True,
        )
        from gateway.server import serve

        serve(config_path, cfg)
        return 0
    finally:
        fake.terminate()
        try:
            fake.wait(timeout=5)
        except subprocess.TimeoutExpired:
            fake.kill()
