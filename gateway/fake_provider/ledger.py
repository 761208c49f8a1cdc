"""What reached the fake provider: requests and concurrency per masked key, and the last requests.

Secrets never leave this module whole: keys are recorded under their last 8 characters, and
the credential headers of a recorded request are cut to their last 8 characters when shown.
The last ``RECENT`` requests are kept raw and only rendered when asked for, to keep the hot
path cheap; an agent's loop (a tool call, then its result) fits in them whole.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec

from gateway.fake_provider.faults import mask_secret

__all__ = ["RECENT", "SECRET_HEADERS", "Ledger", "RecordedRequest"]

SECRET_HEADERS: frozenset[str] = frozenset({"authorization", "x-api-key", "api-key"})

RECENT = 64
"""How many of the latest requests ``GET /_fake/requests`` shows."""

_decoder = msgspec.json.Decoder()


@dataclass(slots=True)
class RecordedRequest:
    """One request as it arrived, before any parsing."""

    method: str
    path: str
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def render(self) -> dict[str, Any]:
        """The request for ``GET /_fake/last_request``, credential headers masked."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in self.headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = mask_secret(value) if name in SECRET_HEADERS else value
        try:
            body: Any = _decoder.decode(self.body) if self.body else None
        except msgspec.DecodeError:
            body = self.body.decode("utf-8", "replace")
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query_string.decode("latin-1"),
            "headers": headers,
            "body": body,
            # as sent: a decoded body cannot show a key spelled twice
            "raw_body": self.body.decode("utf-8", "replace"),
        }


class Ledger:
    """Request counts and in-flight gauges, by masked key."""

    def __init__(self) -> None:
        self.total = 0
        self.requests_by_key: dict[str, int] = {}
        self.in_flight_by_key: dict[str, int] = {}
        self.max_in_flight_by_key: dict[str, int] = {}
        self.recent: deque[RecordedRequest] = deque(maxlen=RECENT)

    @property
    def last_request(self) -> RecordedRequest | None:
        """The latest request to arrive, if any since the last :meth:`clear`."""
        return self.recent[-1] if self.recent else None

    def begin(self, masked_key: str, request: RecordedRequest) -> None:
        """A request arrived; it is in flight until :meth:`end`."""
        self.total += 1
        self.recent.append(request)
        if not masked_key:
            return
        self.requests_by_key[masked_key] = self.requests_by_key.get(masked_key, 0) + 1
        in_flight = self.in_flight_by_key.get(masked_key, 0) + 1
        self.in_flight_by_key[masked_key] = in_flight
        if in_flight > self.max_in_flight_by_key.get(masked_key, 0):
            self.max_in_flight_by_key[masked_key] = in_flight

    def end(self, masked_key: str) -> None:
        """The request of :meth:`begin` is over (answered, failed, or abandoned by its client)."""
        if masked_key:
            self.in_flight_by_key[masked_key] -= 1

    def stats(self) -> dict[str, Any]:
        """The body of ``GET /_fake/stats``."""
        return {
            "total": self.total,
            "requests_by_key": dict(self.requests_by_key),
            "in_flight_by_key": dict(self.in_flight_by_key),
            "max_in_flight_by_key": dict(self.max_in_flight_by_key),
        }

    def clear(self) -> None:
        """Forget every count; requests still in flight keep being tracked."""
        self.total = 0
        self.requests_by_key.clear()
        self.max_in_flight_by_key = {k: v for k, v in self.in_flight_by_key.items() if v}
        self.in_flight_by_key = {k: v for k, v in self.in_flight_by_key.items() if v}
        self.recent.clear()
