"""The Gateway: everything one worker process holds, built once from the config at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Mapping

from gateway.clients import Client, ClientDirectory, client_key_secret
from gateway.config import Config
from gateway.control.sync import ConfigSync
from gateway.control.url_policy import address_policy
from gateway.providers.transport import (
    UpstreamTransport,
    choose_kind,
    create_transport,
    proxy_configured,
)
from gateway.routing.degraded import DegradedMode
from gateway.routing.router import Router
from gateway.routing.settler import Settler
from gateway.routing.table import RouteTable
from gateway.state.connection import open_redis
from gateway.state.guard import RedisGuard
from gateway.state.store import SharedState, StateError
from gateway.state.usage_buffer import UsageBuffer
from gateway.telemetry import tracing
from gateway.telemetry.metrics import get_metrics, worker_exit

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
        self.state = SharedState(
            handle, prefix=cfg.redis.prefix, guard=RedisGuard(cfg.redis.retry_interval_s)
        )
        self.state.guard.on_change = self._redis_changed
        self.transport = transport or _upstream_transport(env, cfg)
        self.settler = Settler(self.state, max_queued=cfg.routing.degraded_settlement_queue)
        self.degraded = DegradedMode(
            prefix=cfg.redis.prefix,
            budget_allowance_micros=int(cfg.routing.degraded_budget_allowance_usd * 1_000_000),
            expected_replicas=cfg.routing.degraded_replicas,
        )
        self.usage = UsageBuffer(
            self.state,
            interval_s=cfg.routing.usage_flush_s,
            max_pending_groups=cfg.routing.usage_max_pending_groups,
            on_drop=lambda requests: get_metrics().settlements_dropped("usage", requests),
        )
        self._usage_task: asyncio.Task[None] | None = None
        self.router = Router(
            self.state, self.transport, self.settler, cfg.routing, self.degraded, self.usage
        )
        self.replica_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._heartbeat: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        """The local store's clean-up after an outage (held: the loop keeps weak references)."""
        self.scripts_loaded = False
        self.shutting_down = False
        self._owns_tracing = False
        # control plane: runtime config records in Redis, merged over the file (gateway/control)
        self.control = ConfigSync(self, env)
        self.control.on_disabled = self.degraded.use_disabled

    def use_config(self, table: RouteTable, clients: tuple[Client, ...]) -> None:
        """Swap in a route table and client keys rebuilt by the control plane."""
        self.table = table
        self.clients.replace(clients)

    @property
    def degraded_mode(self) -> bool:
        """Redis is unreachable and this replica routes on its local share of the limits."""
        return self.state.guard.is_down

    def _redis_changed(self, up: bool) -> None:
        get_metrics().degraded(not up)
        if up:
            log.warning("redis is reachable again: leaving degraded mode")
            self._recovery = asyncio.get_running_loop().create_task(self.degraded.reset())
        elif self.degraded.replicas is None:
            log.error(
                "redis is unreachable: degraded mode; this worker never learned the fleet's size "
                "(no heartbeat reached Redis, routing.degraded_replicas unset), so it refuses "
                "every limited client and key until Redis answers"
            )
        else:
            log.error(
                "redis is unreachable: degraded mode (local share of limits for %d workers)",
                self.degraded.replicas,
            )

    async def _beat(self) -> None:
        """Heartbeat every 2 s: tells Redis this replica lives and learns how many do.

        It doubles as the probe that notices Redis coming back when no traffic flows.
        """
        call = self.state.heartbeat_call(self.replica_id, 6000)
        while True:
            with contextlib.suppress(StateError):
                self.degraded.saw_replicas(int((await self.state.run([call]))[0]))
            await asyncio.sleep(2.0)

    async def start(self) -> None:
        if not tracing.enabled():  # a tracer set up by the embedding program stays its own
            self._owns_tracing = tracing.setup_tracing() is not None
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        self._usage_task = asyncio.get_running_loop().create_task(self.usage.run())
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
        """Ready: scripts loaded once and not shutting down. Degraded mode still serves."""
        if self.shutting_down:
            return False
        if self.scripts_loaded and self.degraded_mode:
            return True
        if not await self.state.ping():
            return self.scripts_loaded
        if not self.scripts_loaded:
            try:
                await self.state.load_scripts()
                self.scripts_loaded = True
            except StateError:
                return False
        return self.control.loaded

    async def stop(self) -> None:
        self.shutting_down = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.control.stop()
        await self.settler.drain()
        if self._usage_task is not None:  # cancelling it flushes what was counted, once more
            self._usage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._usage_task
        await self.transport.aclose()
        await self.state.aclose()
        if self._owns_tracing:
            tracing.shutdown_tracing()  # flushes the spans still queued for export
        worker_exit()


def _upstream_transport(env: Mapping[str, str], cfg: Config) -> UpstreamTransport:
    """The upstream client `choose_kind` names; behind an egress proxy, one that uses it.

    It checks every address it connects to against the upstream URL policy (unless the config
    allows private upstreams): a DNS name rebound to a metadata address gets no connection.
    """
    kind = choose_kind(env)
    proxied = proxy_configured(env)
    if proxied and kind != "aiohttp":
        log.warning(
            "HTTP(S)_PROXY is set but the %s upstream client ignores proxies; "
            "unset KEYWAY_UPSTREAM_CLIENT (or set it to aiohttp) to call upstreams through it",
            kind,
        )
    policy = address_policy(allow_private=cfg.server.allow_private_upstreams)
    return create_transport(kind, trust_env=proxied, address_policy=policy)
