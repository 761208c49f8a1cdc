"""DNS for the `h1` transport: one lookup per host and port, shared by every new connection.

The aiohttp transport kept DNS answers and shared a lookup among concurrent connects. Without
that, a burst of new connections (a cold start under load, a pool emptied by an upstream
restart) queues one getaddrinfo per connection on the resolver's few threads (libuv's 4 under
uvloop), and in Kubernetes (``ndots:5``) each expands into several queries: connects then time
out on DNS alone. So an answer is kept for `ttl_s` (`DNS_TTL_S`, 30 s: getaddrinfo does not
report the record's TTL, so a short cap stands in for it), and forgotten as soon as none of its
addresses accepts a connection (a moved host is found again at once); a lookup under way is
shared, and a caller that gives up (its timeout, a cancel) does not cancel it for the others.
IP literals are never looked up.

Every address handed to a connect passes the transport's `AddressPolicy` first, whether it came
from a fresh lookup, the cache or an IP literal: a host that resolves (or is rebound) to a
refused address gets no connection (`AddressRefused` when none of its addresses is left).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from gateway.providers.transport import DNS_TTL_S, AddressPolicy, AddressRefused

__all__ = ["DNS_TTL_S", "Resolver"]


class Resolver:
    """Addresses of (host, port), cached for `ttl_s`, one lookup at a time per key."""

    __slots__ = ("_answers", "_lookups", "_policy", "_ttl_s")

    def __init__(self, ttl_s: float = DNS_TTL_S, policy: AddressPolicy | None = None) -> None:
        self._ttl_s = ttl_s
        self._policy = policy
        self._answers: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Task[list[str]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses the policy allows, in the resolver's order.

        Raises OSError (socket.gaierror) when the lookup fails, `AddressRefused` when the
        policy refuses every address.
        """
        key = (host, port)
        loop = asyncio.get_running_loop()
        answer = self._answers.get(key)
        if answer is not None and answer[0] > loop.time():
            return self._allowed(answer[1])
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return self._allowed([host])
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = loop.create_task(self._look_up(host, port))
            lookup.add_done_callback(lambda done: self._settle(key, done))
        return self._allowed(await asyncio.shield(lookup))

    def forget(self, host: str, port: int) -> None:
        """Drop the answer for (host, port): the next connect looks it up again."""
        self._answers.pop((host, port), None)

    def clear(self) -> None:
        self._answers.clear()
        self._lookups.clear()  # a lookup under way still serves whoever awaits it

    def _allowed(self, addresses: list[str]) -> list[str]:
        policy = self._policy
        if policy is None:
            return addresses
        allowed = [a for a in addresses if policy(a) is None]
        if allowed:
            return allowed
        raise AddressRefused(
            f"upstream address refused by the upstream policy: {policy(addresses[0])}"
        )

    async def _look_up(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "no address")
        return addresses

    def _settle(self, key: tuple[str, int], done: asyncio.Task[list[str]]) -> None:
        if self._lookups.get(key) is done:
            del self._lookups[key]
        if done.cancelled() or done.exception() is not None:
            return  # a failed lookup is not kept: the next connect tries again
        self._answers[key] = (done.get_loop().time() + self._ttl_s, done.result())
