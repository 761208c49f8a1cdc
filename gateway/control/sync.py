"""ConfigSync: keep this replica's route table and client keys equal to file + Redis records.

    start:  (--config-overwrite: drop the runtime records of the ids the file defines)
            read every record at one version -> merge over the file -> swap into the Gateway
    watch:  SUBSCRIBE <prefix>:{cfg}:changed   a write announces its version: reload at once
            every KEYWAY_CONFIG_POLL_S seconds (default 5) without a message: GET the version
            and reload if it moved (a pub/sub message can be lost on a reconnect)
    disabled keys (at start, each poll, each reload): HGETALL <pool>:disabled of every pool,
            handed to degraded mode (`on_disabled`); a disable moves no config version

Requests never wait on Redis for config: they read the last snapshot swapped in. When Redis is
unreachable the last snapshot keeps serving and the watcher retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from gateway.control.merge import FileBaseline, Snapshot, merge
from gateway.control.records import Kind, key_field
from gateway.control.store import ANY, Change, ConfigStore
from gateway.secrets.keyring import Keyring, load_keyring
from gateway.state.store import StateError

if TYPE_CHECKING:
    from gateway.runtime import Gateway

__all__ = ["ConfigSync"]

log = logging.getLogger("keyway.control")

_TRUE = ("1", "true", "yes", "on")
_WAKE_S = 1.0
"""Longest blocking read of the watcher: it notices a stop request at least this often."""


class ConfigSync:
    """The replica's view of the runtime config, and the task that keeps it current."""

    def __init__(self, gw: Gateway, env: Mapping[str, str]) -> None:
        self.gw = gw
        self.env = env
        self.store = ConfigStore(gw.state)
        self.keyring: Keyring | None = load_keyring(env)
        self.base = FileBaseline.build(gw.cfg, gw.clients.digest, env)
        self.poll_s = max(0.05, float(env.get("KEYWAY_CONFIG_POLL_S") or 5.0))
        self.overwrite = env.get("KEYWAY_CONFIG_OVERWRITE", "").lower() in _TRUE
        server = gw.cfg.server  # the upstream policy: config file or environment, never Redis
        self.allow_private_upstreams = server.allow_private_upstreams
        self.upstream_hosts_allowed = frozenset(
            host.rstrip(".").lower() for host in server.upstream_hosts_allowed
        )
        self.client_key_secret_set = bool(env.get("KEYWAY_CLIENT_KEY_SECRET"))
        self.snapshot: Snapshot | None = None
        self.disabled: Mapping[str, frozenset[str]] = {}
        """Key ids disabled in Redis (by an operator or a 401/403), by provider, as last read."""
        self.on_disabled: Callable[[Mapping[str, frozenset[str]]], None] | None = None
        """Told every read of `disabled` (the Gateway's degraded mode)."""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def loaded(self) -> bool:
        return self.snapshot is not None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            if self.overwrite:
                await self.drop_file_overrides()
            await self.refresh()
        except StateError as exc:
            log.error("runtime config not loaded (%s); serving the file until Redis answers", exc)
        else:
            with contextlib.suppress(StateError):  # the watcher reads them again at once
                await self.read_disabled()
        self._task = asyncio.create_task(self._watch(), name="keyway-config-watch")

    async def stop(self) -> None:
        """Stop the watcher; bounded: the loop also checks a flag at least every second."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=_WAKE_S * 2)

    async def drop_file_overrides(self) -> int:
        """--config-overwrite: remove runtime records (and tombstones) of the file's ids."""
        cfg = self.base.config
        names: dict[Kind, list[str]] = {
            "providers": list(cfg.providers),
            "keys": [key_field(p, k.id) for p, prov in cfg.providers.items() for k in prov.keys],
            "models": list(cfg.models),
            "clients": [c.id for c in cfg.clients],
        }
        changes: list[Change] = []
        for kind, fields in names.items():
            current = await self.store.get_many(kind, fields)
            changes.extend(
                Change(kind, f, ANY, None) for f, v in zip(fields, current, strict=True) if v
            )
        if changes:
            await self.store.write(changes)
            log.warning(
                "config overwrite: removed %d runtime records that the config file defines",
                len(changes),
            )
        return len(changes)

    # -- snapshot -----------------------------------------------------------------------------

    async def refresh(self) -> Snapshot:
        """Read every record and swap in the merged snapshot (unless the version is unchanged)."""
        async with self._lock:
            stored = await self.store.read_all()
            current = self.snapshot
            if current is not None and current.version == stored.version:
                return current
            snapshot = merge(self.base, stored, self.keyring, self.env)
            self._apply(snapshot, current)
            return snapshot

    async def check(self) -> Snapshot | None:
        """Reload if the version in Redis moved (one GET when it did not)."""
        version = await self.store.version()
        if self.snapshot is None or version != self.snapshot.version:
            return await self.refresh()
        return self.snapshot

    async def read_disabled(self) -> Mapping[str, frozenset[str]]:
        """Read which keys of every pool are disabled, and hand that to `on_disabled`.

        The flag lives in Redis only (acquire.lua skips by it); degraded mode must keep skipping
        those keys while Redis is unreachable, so each replica keeps the last copy it read.
        """
        pools = sorted(self.gw.table.pools)
        found = await asyncio.gather(*(self.store.disabled_keys(p) for p in pools))
        self.disabled = {p: frozenset(d) for p, d in zip(pools, found, strict=True) if d}
        if self.on_disabled is not None:
            self.on_disabled(self.disabled)
        return self.disabled

    def _apply(self, snapshot: Snapshot, previous: Snapshot | None) -> None:
        known = set(previous.problems) if previous else set()
        for problem in snapshot.problems:
            if problem not in known:
                log.warning("runtime config: %s", problem)
        self.gw.use_config(snapshot.table, snapshot.clients)
        self.snapshot = snapshot
        log.info(
            "runtime config version %d applied: %d providers, %d keys, %d model aliases, "
            "%d client keys",
            snapshot.version,
            len(snapshot.table.pools),
            sum(len(p.keys) for p in snapshot.table.pools.values()),
            len(snapshot.table.aliases),
            len(snapshot.clients),
        )

    # -- the watcher --------------------------------------------------------------------------

    async def _watch(self) -> None:
        delay = 0.1
        while not self._stopping:
            try:
                await self._follow()
            except (StateError, RedisError, OSError, ValueError) as exc:
                log.warning("config watcher: %s; retrying in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_s)

    def _pubsub(self) -> Any:
        try:
            return self.store.state.handle.client.pubsub()
        except (AttributeError, NotImplementedError, RedisError):
            return None

    async def _follow(self) -> None:
        pubsub = self._pubsub()
        try:
            if pubsub is not None:
                await pubsub.subscribe(self.store.channel)
            await self.check()  # anything announced before the subscription took
            await self.read_disabled()
            loop = asyncio.get_running_loop()
            next_poll = loop.time() + self.poll_s
            while not self._stopping:
                wait = max(0.0, min(next_poll - loop.time(), _WAKE_S))
                if pubsub is None:
                    await asyncio.sleep(wait)
                    message = None
                else:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                if message is None:
                    if loop.time() >= next_poll:
                        await self.check()
                        await self.read_disabled()
                        next_poll = loop.time() + self.poll_s
                    continue
                # a burst of writes: take every queued announcement, then reload once
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                    pass
                await self.refresh()
                await self.read_disabled()  # the pools may have changed
        finally:
            if pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
