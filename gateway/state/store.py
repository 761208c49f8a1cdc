"""SharedState: the only door to Redis. Runs the Lua scripts, several per round trip.

Calls that belong to one request step (admit the client + acquire a key, or settle both) go out
together: one pipeline on standalone Redis, concurrent calls on Cluster (different slots). Either
way the request pays one round trip of latency. A script Redis forgot (restart, failover) is
loaded again and the call repeated, transparently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import (
    BusyLoadingError,
    NoScriptError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.state.connection import RedisHandle
from gateway.state.guard import RedisGuard
from gateway.state.layout import client_prefix, pool_prefix
from gateway.state.scripts import (
    ACQUIRE,
    ALL_SCRIPTS,
    CLIENT_ADMIT,
    CLIENT_SETTLE,
    HEARTBEAT,
    PAIRS,
    RENEW,
    SETTLE,
    LuaScript,
)

__all__ = [
    "Admission",
    "Lease",
    "NoKey",
    "ScriptCall",
    "SharedState",
    "StateError",
    "StateUnavailable",
]


class StateError(Exception):
    """Redis could not answer (down, timeout, script error); wraps the client's exception."""


class StateUnavailable(StateError):
    """Redis is unreachable (or the guard holds calls back while it is): degraded mode applies."""


_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    OSError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: LuaScript
    keys: tuple[str, ...]
    args: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Lease:
    """A reserved upstream key: settle it exactly once (a second settle is a no-op)."""

    provider: str
    id: str
    """The lease id: the request id and the attempt number."""
    key_id: str
    probe: bool
    local: bool = False
    """Taken from the in-process store while Redis was unreachable (degraded mode)."""


@dataclass(frozen=True, slots=True)
class NoKey:
    """No key of the pool fits now; `wait_ms` until one will (-1: not by waiting)."""

    wait_ms: int
    skipped: str

    @property
    def model_closed(self) -> bool:
        """The provider+model breaker refused: no other key of the pool would do better."""
        return self.skipped.startswith("model=")

    def merge(self, other: NoKey) -> NoKey:
        """Both refusals of one pool (its sample, then the rest): the sooner wait, all reasons."""
        waits = [w for w in (self.wait_ms, other.wait_ms) if w >= 0]
        skipped = ",".join(s for s in (self.skipped, other.skipped) if s)
        return NoKey(wait_ms=min(waits) if waits else -1, skipped=skipped)


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    wait_ms: int = 0
    reason: str = ""


def _is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, NoScriptError) or (
        isinstance(exc, ResponseError) and str(exc).startswith("NOSCRIPT")
    )


class SharedState:
    """Typed calls of the scripts in `lua/`, against one Redis deployment."""

    def __init__(
        self, handle: RedisHandle, *, prefix: str = "kw", guard: RedisGuard | None = None
    ) -> None:
        self.handle = handle
        self.prefix = prefix
        self.guard = guard or RedisGuard()
        # script calls go over the auto-pipelined connection when there is one
        self._redis: Any = handle.fast or handle.client

    # -- plumbing ---------------------------------------------------------------------------

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script (on every primary, for a cluster)."""
        try:
            for script in ALL_SCRIPTS:
                # redis-py sends SCRIPT LOAD to every primary of a cluster
                sha = await self._redis.script_load(script.source)
                if sha != script.sha:
                    raise StateError(f"{script.name}: Redis computed another SHA")
        except _UNAVAILABLE as exc:
            raise StateUnavailable(f"loading scripts: {type(exc).__name__}") from exc
        except RedisError as exc:
            raise StateError(f"loading scripts: {exc}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def _one(self, call: ScriptCall) -> Any:
        try:
            return await self._redis.evalsha(
                call.script.sha, len(call.keys), *call.keys, *call.args
            )
        except RedisError as exc:
            if not _is_noscript(exc):
                raise
        await self.load_scripts()
        return await self._redis.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)

    async def run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run the calls in one round trip.

        Raises `StateUnavailable` when Redis cannot be reached (at once while the guard is
        down), `StateError` when a script failed.
        """
        if not self.guard.admit():
            raise StateUnavailable("redis unavailable (guard open)")
        try:
            if len(calls) == 1:
                result = [await self._one(calls[0])]
            elif len(calls) == 2 and not self.handle.cluster and self._pairable(calls):
                result = list(await self._one(self._paired(calls[0], calls[1])))
            elif self.handle.cluster or self.handle.fast is not None:
                result = list(await asyncio.gather(*(self._one(c) for c in calls)))
            else:
                result = await self._pipelined(calls)
        except _UNAVAILABLE as exc:
            self.guard.failed()
            raise StateUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
        except StateUnavailable:
            self.guard.failed()
            raise
        except (RedisError, StateError) as exc:
            self.guard.succeeded()
            raise StateError(str(exc)) from exc
        self.guard.succeeded()
        return result

    @staticmethod
    def _pairable(calls: Sequence[ScriptCall]) -> bool:
        return (calls[0].script.name, calls[1].script.name) in PAIRS

    @staticmethod
    def _paired(first: ScriptCall, second: ScriptCall) -> ScriptCall:
        """Two calls as one EVALSHA of their generated pair (see scripts.pair)."""
        script = PAIRS[(first.script.name, second.script.name)]
        args = (len(first.args), *first.args, *second.args)
        return ScriptCall(script, (first.keys[0], second.keys[0]), args)

    async def _pipelined(self, calls: Sequence[ScriptCall]) -> list[Any]:
        for attempt in (1, 2):
            pipe = self._redis.pipeline(transaction=False)
            for c in calls:
                pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(_is_noscript(r) for r in results if isinstance(r, Exception)):
                # a NOSCRIPT reply means that call did not run: load, then send the whole
                # batch again (the scripts are idempotent by request id)
                await self.load_scripts()
                continue
            for r in results:
                if isinstance(r, Exception):
                    raise r
            return results
        raise StateError("scripts missing after reload")  # pragma: no cover

    # -- script calls -----------------------------------------------------------------------

    def acquire_call(
        self,
        provider: str,
        lease_id: str,
        *,
        tokens: int,
        lease_ttl_ms: int,
        strategy: str,
        random: int,
        candidates: Sequence[tuple[str | int, ...]],
        model: str,
    ) -> ScriptCall:
        """`candidates`: (key id, rpm, tpm, max concurrency, weight), 0 meaning no limit."""
        p = pool_prefix(self.prefix, provider)
        args: list[str | int] = [
            p,
            lease_id,
            tokens,
            lease_ttl_ms,
            strategy,
            random,
            model,
            len(candidates),
        ]
        for cand in candidates:
            args.extend(cand)
        return ScriptCall(ACQUIRE, (f"{p}:leases",), tuple(args))

    @staticmethod
    def parse_acquire(
        provider: str, lease_id: str, reply: Any, *, local: bool = False
    ) -> Lease | NoKey:
        if int(reply[0]) == 1:
            return Lease(
                provider=provider,
                id=lease_id,
                key_id=str(reply[1]),
                probe=int(reply[2]) == 1,
                local=local,
            )
        return NoKey(wait_ms=int(reply[1]), skipped=str(reply[2]))

    def client_admit_call(
        self,
        client_id: str,
        request_id: str,
        *,
        rpm: int,
        tpm: int,
        tokens: int,
        cost_micros: int,
        budget_day_micros: int,
        budget_month_micros: int,
        hold_ttl_ms: int,
    ) -> ScriptCall:
        c = client_prefix(self.prefix, client_id)
        return ScriptCall(
            CLIENT_ADMIT,
            (f"{c}:win",),
            (c, request_id, rpm, tpm, tokens, cost_micros, budget_day_micros,
             budget_month_micros, hold_ttl_ms),
        )  # fmt: skip

    @staticmethod
    def parse_admit(reply: Any) -> Admission:
        if int(reply[0]) == 1:
            return Admission(admitted=True)
        return Admission(admitted=False, wait_ms=int(reply[1]), reason=str(reply[2]))

    def settle_call(self, lease: Lease, args: Sequence[str | int]) -> ScriptCall:
        """`args`: ARGV[3..] of settle.lua (outcome, tokens, cooldown, ... model)."""
        p = pool_prefix(self.prefix, lease.provider)
        return ScriptCall(SETTLE, (f"{p}:leases",), (p, lease.id, *args))

    def client_settle_call(
        self,
        client_id: str,
        request_id: str,
        *,
        mode: str,
        tokens_in: int,
        tokens_out: int,
        cost_micros: int,
    ) -> ScriptCall:
        c = client_prefix(self.prefix, client_id)
        return ScriptCall(
            CLIENT_SETTLE, (f"{c}:win",), (c, request_id, mode, tokens_in, tokens_out, cost_micros)
        )

    def renew_lease_call(self, lease: Lease, ttl_ms: int) -> ScriptCall:
        """renew.lua on the pool's slot: the lease expires `ttl_ms` from now, if still held."""
        p = pool_prefix(self.prefix, lease.provider)
        return ScriptCall(RENEW, (f"{p}:leases", f"{p}:lease"), (lease.id, ttl_ms))

    def renew_hold_call(self, client_id: str, request_id: str, ttl_ms: int) -> ScriptCall:
        """renew.lua on the client's slot: its admission hold expires `ttl_ms` from now."""
        c = client_prefix(self.prefix, client_id)
        return ScriptCall(RENEW, (f"{c}:admz", f"{c}:adm"), (request_id, ttl_ms))

    def heartbeat_call(self, replica_id: str, ttl_ms: int) -> ScriptCall:
        return ScriptCall(HEARTBEAT, (f"{self.prefix}:{{meta}}:replicas",), (replica_id, ttl_ms))

    async def aclose(self) -> None:
        if self.handle.fast is not None:
            await self.handle.fast.aclose()
        if not self.handle.cluster and not self.handle.embedded:
            # built on a pool it does not own (connection.py): close the pool with it
            await self.handle.client.aclose(close_connection_pool=True)
            return
        close = getattr(self.handle.client, "aclose", None)
        if close is not None:
            await close()
