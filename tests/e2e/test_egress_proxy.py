"""Behind an egress proxy: with HTTP(S)_PROXY set, Keyway calls its upstreams through it.

The `h1` client speaks to no proxy, so the gateway picks the aiohttp transport with the proxy of
the environment. The proxy here is a small forwarding proxy (absolute-form requests, one
exchange per connection) run in the test process; it records what it forwarded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from gateway.providers.transport import choose_kind
from tests.harness import FakeControl, Proc, make_config, start_gateway


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1: reads `METHOD http://host:port/path HTTP/1.1`,
    forwards it in origin form with `Connection: close`, relays the answer and closes."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *fields = head.decode("latin-1").split("\r\n")[:-2]
            method, url, version = line.split(" ")
            assert url.startswith("http://"), url  # absolute form: this is a proxy request
            authority, _, path = url[len("http://") :].partition("/")
            host, _, port = authority.partition(":")
            kept = [
                f
                for f in fields
                if f.split(":")[0].lower() not in ("connection", "proxy-connection")
            ]
            length = next(
                (int(f.split(":")[1]) for f in kept if f.lower().startswith("content-length:")), 0
            )
            body = await reader.readexactly(length)
            self.forwarded.append(f"{method} {url}")
            up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
            request = "\r\n".join(
                [f"{method} /{path} {version}", *kept, "Connection: close", "", ""]
            )
            up_writer.write(request.encode("latin-1") + body)
            answer = await up_reader.read()  # the upstream closes after its answer
            up_writer.close()
            status_and_head, sep, rest = answer.partition(b"\r\n\r\n")
            lines = [
                h
                for h in status_and_head.split(b"\r\n")
                if not h.lower().startswith(b"connection:")
            ]
            writer.write(b"\r\n".join([*lines, b"Connection: close"]) + sep + rest)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture(scope="module")
def proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as running:
        yield running


@pytest.fixture(scope="module")
def client(
    logs: Path, fake_proc: Proc, redis_url: str, proxy: ForwardProxy
) -> Iterator[openai.OpenAI]:
    gw = start_gateway(
        logs,
        make_config(fake_proc.url),
        redis_url=redis_url,
        env={"KEYWAY_REDIS_PREFIX": "e2e-proxy", "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}"},
    )
    yield openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client-a", max_retries=0)
    gw.stop()


def test_a_proxy_in_the_environment_chooses_the_client_that_uses_it() -> None:
    assert choose_kind({}) == "h1"
    assert choose_kind({"HTTPS_PROXY": "http://proxy:3128"}) == "aiohttp"
    assert choose_kind({"https_proxy": "http://proxy:3128"}) == "aiohttp"
    assert choose_kind({"HTTPS_PROXY": "http://p:1", "KEYWAY_UPSTREAM_CLIENT": "h1"}) == "h1"


def test_upstream_calls_go_through_the_egress_proxy(
    client: openai.OpenAI, proxy: ForwardProxy, fake: FakeControl, fake_proc: Proc
) -> None:
    before = len(proxy.forwarded)
    chat = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    url = f"POST {fake_proc.url}/v1/chat/completions"
    assert proxy.forwarded[before:] == [url, url]
    assert sum(fake.requests_by_key().values()) == 2  # each answered by the provider, once
