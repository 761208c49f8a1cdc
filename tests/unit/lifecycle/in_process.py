"""A whole Gateway in this process: its config, the app as served, and a client on each side.

`running(cfg)` yields a `Lifecycle`: a `Gateway` whose upstream is a `ScriptedTransport`, on
the embedded store (`lifecycle_config()`, no Redis URL) or on a real Redis
(`lifecycle_config({"REDIS_URL": ..., "KEYWAY_REDIS_PREFIX": ...})`), and the app exactly as
`app_from_env` serves it (the hot-path dispatcher in front of Litestar). Tests speak HTTP to it
through `post` (httpx over ASGI) or, when they must control the client side (a disconnect, a
cancelled request task), through `start`, which drives the ASGI app directly; `drive` does
either, as a stage says. `settle()` waits until every background settlement has been applied.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import yaml

from gateway.api.hot_paths import HotPathDispatcher
from gateway.app import create_app
from gateway.config import Config
from gateway.config_load import apply_env, parse_config
from gateway.runtime import Gateway
from tests.unit.lifecycle.scripted_transport import ScriptedTransport, SentRequest
from tests.unit.lifecycle.upstream_replies import answer

__all__ = ["CONFIG", "ENV", "KEYS", "AsgiCall", "Lifecycle", "lifecycle_config", "running"]

CONFIG = """
providers:
  oai:
    kind: openai
    base_url: https://oai.example/v1
    keys:
      - {id: o1, secret: sk-oai-0001, rpm: 100, tpm: 200000, max_concurrency: 8}
      - {id: o2, secret: sk-oai-0002, rpm: 100, tpm: 200000, max_concurrency: 8}
  ant:
    kind: anthropic
    base_url: https://ant.example
    keys:
      - {id: a1, secret: sk-ant-0001, rpm: 100, tpm: 200000, max_concurrency: 8}
      - {id: a2, secret: sk-ant-0002, rpm: 100, tpm: 200000, max_concurrency: 8}
  solo:
    kind: openai
    base_url: https://solo.example/v1
    keys:
      - {id: s1, secret: sk-solo-0001, rpm: 100, tpm: 5000}
models:
  gpt: {deployments: [{provider: oai, model: gpt-up}]}
  claude: {deployments: [{provider: ant, model: claude-up}]}
  embed: {deployments: [{provider: oai, model: embed-up}]}
  solo: {deployments: [{provider: solo, model: solo-up}]}
clients:
  - {id: alice, key: sk-alice, rpm: 1000, tpm: 1000000,
     budget_daily_usd: 100, budget_monthly_usd: 1000}
  - {id: bob, key: sk-bob, rpm: 1000, tpm: 1000000, budget_daily_usd: 100}
  - {id: broke, key: sk-broke, budget_daily_usd: 0.000001}
prices:
  gpt-up: {input: 2, output: 8}
  claude-up: {input: 3, output: 15}
  embed-up: {input: 1, output: 0}
  solo-up: {input: 2, output: 8}
routing:
  cooldown_s: 30
"""
"""Every alias maps to another upstream model name, so each request is re-encoded or translated
on its way up (the `prepare` step always does work that can fail)."""

ENV = {"KEYWAY_CLIENT_KEY_SECRET": "lifecycle-tests", "KEYWAY_CONFIG_POLL_S": "60"}
KEYS = {"alice": "sk-alice", "bob": "sk-bob", "broke": "sk-broke"}


def lifecycle_config(env: Mapping[str, str] | None = None) -> Config:
    """`CONFIG`, with the environment's knobs (REDIS_URL, KEYWAY_REDIS_PREFIX, ...) over it."""
    return parse_config(apply_env(yaml.safe_load(CONFIG), env or {}))


class AsgiCall:
    """One request driven straight through the ASGI app, its client side under the test's control.

    `receive` hands over the body, then waits until `disconnect()` and says `http.disconnect`.
    """

    def __init__(self, app: Any, path: str, body: bytes, key: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self._body: bytes | None = body
        self._gone = asyncio.Event()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"keyway"),
                (b"authorization", b"Bearer " + key.encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("keyway", 80),
        }
        self.task = asyncio.ensure_future(app(scope, self._receive, self._send))

    async def _receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Any) -> None:
        self.messages.append(dict(message))

    def disconnect(self) -> None:
        self._gone.set()

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return int(starts[0]["status"]) if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] == "http.response.body"
        )


@dataclass
class Lifecycle:
    gw: Gateway
    app: Any
    upstream: ScriptedTransport
    http: httpx.AsyncClient

    async def post(self, path: str, body: bytes, client: str = "alice") -> httpx.Response:
        headers = {"authorization": f"Bearer {KEYS[client]}", "content-type": "application/json"}
        return await self.http.post(path, content=body, headers=headers)

    def start(self, path: str, body: bytes, client: str = "alice") -> AsgiCall:
        return AsgiCall(self.app, path, body, KEYS[client])

    async def drive(
        self,
        path: str,
        body: bytes,
        client: str = "alice",
        how: str = "http",
        *,
        hangs: Callable[[SentRequest], bool] = lambda request: True,
    ) -> tuple[int | None, bytes]:
        """Send the request: over HTTP (`how="http"`), or through `start`, the client then leaving
        (`disconnect`) or the request task cancelled (`cancel`) once the upstream exchange of a
        request `hangs` picks hangs, or at once if the request ends before that. The status and
        body the client got."""
        if how == "http":
            response = await self.post(path, body, client)
            return response.status_code, response.content
        call = self.start(path, body, client)
        hanging = asyncio.ensure_future(self.upstream.wait_hanging(hangs))
        await asyncio.wait({call.task, hanging}, return_when=asyncio.FIRST_COMPLETED)
        hanging.cancel()
        if how == "disconnect":
            call.disconnect()
        else:
            call.task.cancel()
        outcomes: list[object] = await asyncio.gather(call.task, return_exceptions=True)
        outcome = outcomes[0]
        if isinstance(outcome, Exception):
            raise AssertionError(f"the app raised {outcome!r}") from outcome
        return call.status, call.body

    async def settle(self) -> None:
        """Wait until every settlement submitted so far (and any replay) has been applied."""
        for _ in range(100):
            for _ in range(3):  # let done callbacks and just-scheduled tasks run
                await asyncio.sleep(0)
            await self.gw.settler.drain()
            if not self.gw.settler.queued:
                return
        raise AssertionError(f"{self.gw.settler.queued} settlements still queued")


@contextlib.asynccontextmanager
async def running(cfg: Config) -> AsyncIterator[Lifecycle]:
    """A started Gateway on `cfg`, its upstream answering `answer` until a test scripts it."""
    upstream = ScriptedTransport(answer)
    gw = Gateway(cfg, ENV, transport=upstream)
    app = create_app(cfg, gw)
    served = HotPathDispatcher(app, app.state.hot_routes)  # as app_from_env serves it (no CORS)
    await gw.start()
    transport = httpx.ASGITransport(app=served)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://keyway") as http:
            yield Lifecycle(gw, served, upstream, http)
    finally:
        await gw.stop()
