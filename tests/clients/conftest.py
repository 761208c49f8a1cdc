"""The clients tier: real client libraries drive one Keyway against one fake provider, offline.

One fake provider and one Keyway (real Redis) serve every test of the package. Keyway has an
OpenAI-kind alias and an Anthropic-kind alias (tests/harness.py `make_config`); a test runs on
both and reads the fake's request log to see which dialect went upstream.

Nothing here may reach past 127.0.0.1: the tracing and telemetry switches of the libraries are
off, proxy and base-URL variables are unset, and every socket connection or name lookup of
this process to another host is refused and fails the test that made it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.providers.transport import PROXY_VARIABLES
from tests.clients.upstream import FakeUpstream
from tests.harness import Proc, make_config, start_fake_provider, start_gateway

_OFFLINE_ENV = {
    "OPENAI_AGENTS_DISABLE_TRACING": "1",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING": "false",
}
_UNSET = (
    *PROXY_VARIABLES,
    "ALL_PROXY",
    "all_proxy",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "OPENAI_PROXY",
    "OPENAI_API_KEY",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_ENDPOINT",
    "LANGCHAIN_ENDPOINT",
)


# -- offline ----------------------------------------------------------------------------------


def _local(host: Any) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="package", autouse=True)
def _offline() -> Iterator[list[str]]:
    """Telemetry off, and every connection or lookup past the loopback refused and recorded."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse_remote(address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if not _local(host):
            attempts.append(repr(address))
            raise OSError(f"tests/clients are offline: no connection to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        refuse_remote(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse_remote(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        refuse_remote((host, 0))
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        for name, value in _OFFLINE_ENV.items():
            patch.setenv(name, value)
        for name in _UNSET:
            patch.delenv(name, raising=False)
        patch.setattr(socket.socket, "connect", connect)
        patch.setattr(socket.socket, "connect_ex", connect_ex)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield attempts


@pytest.fixture(autouse=True)
def _stays_offline(_offline: list[str]) -> Iterator[None]:
    """Fail the test that tried to reach past the loopback, even from a background thread."""
    before = len(_offline)
    yield
    assert _offline[before:] == [], "a client tried to reach the network"


# -- the processes ----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def upstream_proc(logs: Path) -> Iterator[Proc]:
    """This package's own fake provider: its request log holds only this package's traffic."""
    with start_fake_provider(logs / "clients") as proc:
        yield proc


@pytest.fixture(scope="package")
def keyway(logs: Path, upstream_proc: Proc, redis_url: str) -> Iterator[Proc]:
    """Keyway (one worker, real Redis) with an OpenAI-kind and an Anthropic-kind alias."""
    config = make_config(upstream_proc.url)
    with start_gateway(
        logs / "clients",
        config,
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "clients"},
    ) as proc:
        yield proc


@pytest.fixture()
def upstream(upstream_proc: Proc) -> FakeUpstream:
    """The fake provider, reset: its request log starts empty for each test."""
    control = FakeUpstream(upstream_proc.url)
    control.reset()
    return control
