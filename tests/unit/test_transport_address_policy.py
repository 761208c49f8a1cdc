"""The upstream address policy at connect time, in every transport that applies it (h1, aiohttp).

Whatever led to an address (an IP literal in any spelling, a DNS answer, a cached answer, a
rebound name), a refused one gets no connection: the send fails with `AddressRefused` and the
server never sees a TCP connection. The real policy refuses metadata and link-local addresses,
which no test can listen on, so most tests here give the transport a policy that refuses
loopback, where a counting server listens.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.control.url_policy import address_refusal
from gateway.providers.h1_resolve import Resolver
from gateway.providers.transport import (
    DNS_TTL_S,
    AddressPolicy,
    AddressRefused,
    ConnectError,
    UpstreamTransport,
    create_transport,
)
from tests.unit.h1_harness import OK, Server, serving

__all__: list[str] = []

KINDS = ("h1", "aiohttp")


def refused(error: ConnectError) -> bool:
    """Refused by the policy, or (aiohttp) a numeric host yarl will not even parse: either way
    nothing was connected."""
    return isinstance(error, AddressRefused) or "InvalidUrl" in str(error)


def refuse_loopback(address: str) -> str | None:
    return "a loopback address" if ipaddress.ip_address(address).is_loopback else None


async def counting_server(servers: list[Server]) -> Server:
    async def handler(index: int, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await server.request(reader) is not None:
            w.write(OK)

    server = await serving(handler)
    servers.append(server)
    return server


@pytest.fixture(params=KINDS)
async def guarded(request: pytest.FixtureRequest) -> AsyncIterator[UpstreamTransport]:
    instance = create_transport(request.param, address_policy=refuse_loopback)
    yield instance
    await instance.aclose()


async def send(transport: UpstreamTransport, url: str) -> Any:
    return await transport.send(
        "POST", url, [("content-type", "application/json")], b"{}",
        connect_timeout_s=2.0, read_timeout_s=2.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",  # a DNS name whose answer is refused
        "2130706433",  # inet_aton spellings of 127.0.0.1
        "0177.0.0.1",
        "0x7f.1",
    ],
)
async def test_a_refused_address_gets_no_connection(
    guarded: UpstreamTransport, servers: list[Server], host: str
) -> None:
    server = await counting_server(servers)
    with pytest.raises(ConnectError) as info:
        await send(guarded, f"http://{host}:{server.port}/v1/chat")
    assert refused(info.value), info.value
    assert server.connections == 0
    assert host not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_an_allowed_address_connects_as_before(kind: str, servers: list[Server]) -> None:
    server = await counting_server(servers)
    transport = create_transport(kind, address_policy=address_refusal)
    try:
        response = await send(transport, f"http://127.0.0.1:{server.port}/v1/chat")
        assert (response.status, await response.read()) == (200, b"ok")
    finally:
        await transport.aclose()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "host", ["0251.0376.0251.0376", "169.254.43518", "0xa9.0xfe.0xa9.0xfe", "169.254.169.254"]
)
async def test_the_metadata_address_is_refused_in_every_spelling(kind: str, host: str) -> None:
    transport = create_transport(kind, address_policy=address_refusal)
    try:
        with pytest.raises(ConnectError) as info:
            await send(transport, f"http://{host}/latest/meta-data/")
        assert refused(info.value), info.value
    finally:
        await transport.aclose()


@pytest.mark.parametrize("kind", ["httpx", "pyreqwest"])
def test_a_transport_that_cannot_check_addresses_is_not_built_with_a_policy(kind: str) -> None:
    with pytest.raises(ValueError, match="cannot check upstream addresses"):
        create_transport(kind, address_policy=address_refusal)


class ScriptedDNS:
    """The loop's getaddrinfo answering `answers` in turn (one list of addresses per lookup)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: list[list[str]]) -> None:
        self.answers = answers
        self.calls = 0
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "getaddrinfo", self._lookup)

    async def _lookup(self, host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer]


async def test_a_rebound_name_is_refused_at_the_next_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the name passed the config-time check, then answers a metadata address."""
    dns = ScriptedDNS(monkeypatch, [["203.0.113.7"], ["169.254.169.254"]])
    resolver = Resolver(policy=address_refusal)
    assert await resolver.resolve("api.example.com", 443) == ["203.0.113.7"]
    resolver.forget("api.example.com", 443)  # the answer expired or its addresses failed
    with pytest.raises(AddressRefused, match="metadata"):
        await resolver.resolve("api.example.com", 443)
    assert dns.calls == 2


async def test_refused_addresses_of_an_answer_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    ScriptedDNS(monkeypatch, [["169.254.169.254", "203.0.113.7", "fe80::1"]])
    resolver = Resolver(policy=address_refusal)
    assert await resolver.resolve("api.example.com", 443) == ["203.0.113.7"]


async def test_an_answer_is_kept_no_longer_than_the_short_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = ScriptedDNS(monkeypatch, [["203.0.113.7"], ["203.0.113.8"]])
    resolver = Resolver(policy=address_refusal)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await resolver.resolve("api.example.com", 443) == ["203.0.113.7"]
    monkeypatch.setattr(loop, "time", lambda: start + DNS_TTL_S - 1)
    assert await resolver.resolve("api.example.com", 443) == ["203.0.113.7"]
    monkeypatch.setattr(loop, "time", lambda: start + 31.0)
    assert await resolver.resolve("api.example.com", 443) == ["203.0.113.8"]
    assert dns.calls == 2


def test_the_policy_type_is_what_url_policy_builds() -> None:
    policy: AddressPolicy = address_refusal
    assert policy("169.254.169.254") is not None
