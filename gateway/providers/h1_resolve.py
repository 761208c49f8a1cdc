"""DNS for the `h1` transport: one lookup per host and port, shared by every new connection.

The aiohttp transport kept DNS answers for 300 s and shared a lookup among concurrent
connects. Without that, a burst of new connections (a cold start under load, a pool emptied
by an upstream restart) queues one getaddrinfo per connection on the resolver's few threads
(libuv's 4 under uvloop), and in Kubernetes (``ndots:5``) each expands into several queries:
connects then time out on DNS alone. So an answer is kept for `ttl_s`, and forgotten as soon
as none of its addresses accepts a connection (a moved host is found again at once); a lookup
under way is shared, and a caller that gives up (its timeout, a cancel) does not cancel it for
the others. IP literals are never looked up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final

__all__ = ["Resolver"]

DNS_TTL_S: Final = 300.0
"""As the aiohttp transport's ``ttl_dns_cache``."""


class Resolver:
    """Addresses of (host, port), cached for `ttl_s`, one lookup at a time per key."""

    __slots__ = ("_answers", "_lookups", "_ttl_s")

    def __init__(self, ttl_s: float = DNS_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._answers: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Task[list[str]]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses, in the resolver's order; raises OSError (socket.gaierror)."""
        key = (host, port)
        loop = asyncio.get_running_loop()
        answer = self._answers.get(key)
        if answer is not None and answer[0] > loop.time():
            return answer[1]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return [host]
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = loop.create_task(self._look_up(host, port))
            lookup.add_done_callback(lambda done: self._settle(key, done))
        return await asyncio.shield(lookup)

    def forget(self, host: str, port: int) -> None:
        """Drop the answer for (host, port): the next connect looks it up again."""
        self._answers.pop((host, port), None)

    def clear(self) -> None:
        self._answers.clear()
        self._lookups.clear()  # a lookup under way still serves whoever awaits it

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
