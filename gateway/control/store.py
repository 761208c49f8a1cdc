"""ConfigStore: the runtime config's door to Redis (records, version, key state, usage reads).

Every write is one atomic script (`lua/config_write.lua`, `lua/config_key_state.lua`) run through
`SharedState`; reads are plain HGET/HGETALL. Config keys live under one hash tag,
``<prefix>:{cfg}:...``, so each script stays in one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from gateway.control.records import KINDS, Kind, StoredConfig
from gateway.state.layout import pool_prefix, window_requests
from gateway.state.scripts import CONFIG_KEY_STATE, CONFIG_READ, CONFIG_WRITE
from gateway.state.store import ScriptCall, SharedState, StateError

__all__ = ["ABSENT", "ANY", "Change", "ConfigStore", "config_prefix"]

ANY = "*"
ABSENT = "!"


def config_prefix(prefix: str) -> str:
    return f"{prefix}:{{cfg}}"


@dataclass(frozen=True, slots=True)
class Change:
    """Set (`value`) or delete (`value=None`) one record, if it still holds `expected`.

    `expected`: the exact stored text, `ABSENT` (the field must not exist) or `ANY`.
    """

    kind: Kind
    field: str
    expected: str
    value: str | None


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}


class ConfigStore:
    """Reads and compare-and-set writes of the config records of one key prefix."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self.prefix = config_prefix(state.prefix)
        self.version_key = f"{self.prefix}:version"
        self.channel = f"{self.prefix}:changed"
        self._redis: Any = state.handle.client

    async def _read(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise StateError(f"reading config: {type(exc).__name__}") from exc

    async def read_all(self) -> StoredConfig:
        """Every record and the version they make up, read atomically."""
        call = ScriptCall(CONFIG_READ, (self.version_key,), (self.prefix,))
        reply = (await self.state.run([call]))[0]
        tables = {kind: _pairs(reply[i + 1]) for i, kind in enumerate(KINDS)}
        return StoredConfig(version=int(reply[0]), **tables)

    async def version(self) -> int:
        raw = await self._read(self._redis.get(self.version_key))
        return int(raw) if raw else 0

    async def get(self, kind: Kind, field: str) -> str | None:
        raw = await self._read(self._redis.hget(f"{self.prefix}:{kind}", field))
        return None if raw is None else str(raw)

    async def get_many(self, kind: Kind, fields: Sequence[str]) -> list[str | None]:
        if not fields:
            return []
        raw = await self._read(self._redis.hmget(f"{self.prefix}:{kind}", list(fields)))
        return [None if v is None else str(v) for v in raw]

    async def write(self, changes: Sequence[Change], *, bump: bool = True) -> int | None:
        """Apply every change or none; the new version, or None when a guard failed."""
        if not changes:
            raise ValueError("write: no changes")
        args: list[str | int] = [self.prefix, 1 if bump else 0, len(changes)]
        for c in changes:
            guard = c.expected if c.expected in (ANY, ABSENT) else "=" + c.expected
            args.extend((c.kind, c.field, guard, "-" if c.value is None else "+" + c.value))
        reply = (
            await self.state.run([ScriptCall(CONFIG_WRITE, (self.version_key,), tuple(args))])
        )[0]
        return int(reply[1]) if int(reply[0]) == 1 else None

    # -- upstream key state (pool slot) ------------------------------------------------------

    async def set_key_disabled(
        self, provider: str, key_id: str, disabled: bool, reason: str = ""
    ) -> bool:
        """Disable (or enable) a key in its pool; True when its state changed."""
        call = ScriptCall(
            CONFIG_KEY_STATE,
            (f"{pool_prefix(self.state.prefix, provider)}:disabled",),
            (key_id, "disable" if disabled else "enable", reason),
        )
        return int((await self.state.run([call]))[0]) == 1

    async def disabled_keys(self, provider: str) -> dict[str, str]:
        raw = await self._read(
            self._redis.hgetall(f"{pool_prefix(self.state.prefix, provider)}:disabled")
        )
        return {str(k): str(v) for k, v in raw.items()}

    async def server_time_ms(self) -> int:
        seconds, micros = await self._read(self._redis.time())
        return int(seconds) * 1000 + int(micros) // 1000

    async def key_hash(self, provider: str, key_id: str) -> tuple[dict[str, str], int]:
        """The key's live-state hash (written by acquire/settle) and its requests in the window."""
        p = pool_prefix(self.state.prefix, provider)
        now = await self.server_time_ms()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(f"{p}:k:{key_id}")
        pipe.hgetall(f"{p}:win:{key_id}")
        fields, window = await self._read(pipe.execute())
        return {str(k): str(v) for k, v in fields.items()}, window_requests(
            {str(k): str(v) for k, v in window.items()}, now
        )

    async def hashes(self, names: Sequence[str]) -> list[dict[str, str]]:
        """HGETALL of each name, pipelined (usage buckets)."""
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(name)
        replies = await self._read(pipe.execute())
        return [{str(k): str(v) for k, v in r.items()} for r in replies]
