"""The cap on one client key's requests in flight, counted in this process: no Redis round trip.

A request takes a slot of its client when its owner is entered (before admission, so a refused
request reserves nothing in Redis) and gives it back when the owner exits: after the answer, or
after the last byte of a stream relayed to a slow reader, whatever ended it (routing/owner.py).
Without a cap, one client with many slow streams fills the upstream pool that every client
shares (1000 connections per worker) and gets the others refused with 503 `local_capacity`.

The count is per worker process, and every worker counts as a replica (as the heartbeats do):
a fleet of R replicas of W workers lets a client run up to R x W x cap requests at once. Making
it exact fleet-wide would cost a Redis round trip before every request and one after, and
Keyway allows one before the upstream call; the client's RPM, TPM and budgets, which are
exact fleet-wide, still bound what those requests may take.

The cap of a client: its own `max_concurrency` (0: none), else
`routing.client_max_concurrency`. A client without a cap is counted all the same, so a cap set
at runtime (admin API) applies to the requests already running.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CLIENT_GATE", "ClientGate", "client_cap"]


def client_cap(own: int | None, default: int) -> int:
    """The cap that holds for a client: its own (0 = none) if it set one, else the default."""
    return default if own is None else own


class ClientGate:
    """Requests in flight by client id; `enter` refuses the one above the client's cap."""

    __slots__ = ("_in_flight",)

    def __init__(self) -> None:
        self._in_flight: dict[str, int] = {}

    def enter(self, client_id: str, cap: int) -> bool:
        """Take a slot for one request of `client_id`: False (nothing taken) when `cap` > 0
        slots are taken already. Each True must be matched by exactly one `leave`."""
        held = self._in_flight.get(client_id, 0)
        if 0 < cap <= held:
            return False
        self._in_flight[client_id] = held + 1
        return True

    def leave(self, client_id: str) -> None:
        """Give back a slot taken by `enter`."""
        held = self._in_flight.get(client_id, 0) - 1
        if held > 0:
            self._in_flight[client_id] = held
        else:  # the entry goes with its last request: the table stays as small as the traffic
            self._in_flight.pop(client_id, None)

    def in_flight(self, client_id: str) -> int:
        return self._in_flight.get(client_id, 0)

    def __len__(self) -> int:
        """Clients with a request in flight."""
        return len(self._in_flight)


CLIENT_GATE: Final = ClientGate()
"""This worker's gate: every request owner of the process counts here (one event loop, so
`enter` and `leave`, which never await, need no lock)."""
