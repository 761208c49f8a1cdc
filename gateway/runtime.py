"""The Gateway: everything one worker process holds, built once from the config at start-up."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from gateway.clients import Client, ClientDirectory, client_key_secret
from gateway.config import Config
from gateway.control.sync import ConfigSync
from gateway.providers.transport import UpstreamTransport, create_transport
from gateway.routing.router import Router
from gateway.routing.settler import Settler
from gateway.routing.table import RouteTable
from gateway.state.connection import open_redis
from gateway.state.store import SharedState, StateError

__all__ = ["Gateway"]

log = logging.getLogger("keyway")


class Gateway:
    """Config, route table, client keys, shared state, upstream transport and router."""

    def __init__(
        self,
        cfg: Config,
        env: Mapping[str, str] | None = None,
        transport: UpstreamTransport | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.cfg = cfg
        self.table = RouteTable(cfg, env)
        self.clients = ClientDirectory(client_key_secret(env))
        self.clients.load_config(cfg.clients, env)
        handle = open_redis(cfg.redis.url, timeout_s=cfg.redis.timeout_s)
        if handle.embedded:
            log.warning(
                "no REDIS_URL: running on the embedded in-process store; "
                "limits hold for this one process only. Replicas need a real Redis."
            )
        self.state = SharedState(handle, prefix=cfg.redis.prefix)
        self.transport = transport or create_transport(
            env.get("KEYWAY_UPSTREAM_CLIENT") or "aiohttp"
        )
        self.settler = Settler(self.state)
        self.router = Router(self.state, self.transport, self.settler, cfg.routing)
        self.scripts_loaded = False
        self.shutting_down = False
        # control plane: runtime config records in Redis, merged over the file (gateway/control)
        self.control = ConfigSync(self, env)

    def use_config(self, table: RouteTable, clients: tuple[Client, ...]) -> None:
        """Swap in a route table and client keys rebuilt by the control plane."""
        self.table = table
        self.clients.replace(clients)

    async def start(self) -> None:
        try:
            await self.state.load_scripts()
            self.scripts_loaded = True
        except StateError as exc:
            # readiness stays red; the first successful call (NOSCRIPT path) loads them again
            log.error("could not load scripts into Redis at start-up: %s", exc)
        await self.control.start()
        log.info(
            "keyway ready: %d providers, %d model aliases, %d client keys, state %s",
            len(self.table.pools),
            len(self.table.aliases),
            len(self.clients),
            self.state.handle.description,
        )

    async def ready(self) -> bool:
        if self.shutting_down:
            return False
        if not await self.state.ping():
            return False
        if not self.scripts_loaded:
            try:
                await self.state.load_scripts()
                self.scripts_loaded = True
            except StateError:
                return False
        return self.control.loaded

    async def stop(self) -> None:
        self.shutting_down = True
        await self.control.stop()
        await self.settler.drain()
        await self.transport.aclose()
        await self.state.aclose()
