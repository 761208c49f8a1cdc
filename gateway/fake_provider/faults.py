"""Injected failures: what the next requests made with a given upstream key should suffer.

Modes: ``"400"``, ``"401"``, ``"429"``, ``"500"``, ``"503"``, ``"529"`` answer that status in the
dialect of the endpoint (400: ``invalid_request_error``, the request's own fault); ``"hang"``
never answers until the client gives up; ``"slow"`` adds ``delay_ms`` before the headers;
``"cut"`` starts the response, then drops the connection before its end; ``"hostile_headers"``
answers normally but with rate-limit headers no parser should trust (``inf``, ``NaN``, negative
counts, a reset of ``1e309s``: see ``HOSTILE_HEADERS``); ``"long_stream"`` streams an answer of
``chunks`` content deltas with every event ``delay_ms`` apart, ending normally with its usage
(a request that does not stream gets that answer at once). A fault armed for key ``"*"``
applies to every key that has none of its own. Arming a key again replaces its fault.
``count`` is how many requests it hits (None: until cleared).

Faults in the HTTP framing itself (a response smuggled after another, heads too large or
without end, a trickled head or body, a redirect, a gzip bomb) are ``hostile_wire.py``'s: the
responses of this app are framed by Granian, which sends none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from gateway.fake_provider.asgi import Headers

__all__ = [
    "ANY_KEY",
    "ERROR_MODES",
    "HOSTILE_HEADERS",
    "Fault",
    "FaultBook",
    "FaultMode",
    "fault_from_headers",
    "hostile",
    "mask_secret",
]

FaultMode = Literal[
    "400",
    "401",
    "429",
    "500",
    "503",
    "529",
    "hang",
    "slow",
    "cut",
    "hostile_headers",
    "long_stream",
]
ERROR_MODES: frozenset[str] = frozenset({"400", "401", "429", "500", "503", "529"})
_MODES: frozenset[str] = ERROR_MODES | {"hang", "slow", "cut", "hostile_headers", "long_stream"}
ANY_KEY = "*"

HOSTILE_HEADERS: dict[bytes, bytes] = {
    b"x-ratelimit-remaining-requests": b"inf",
    b"x-ratelimit-remaining-tokens": b"-5",
    b"x-ratelimit-reset-requests": b"1e309s",
    b"anthropic-ratelimit-requests-remaining": b"NaN",
    b"anthropic-ratelimit-tokens-remaining": b"-5",
}
"""The values fault ``"hostile_headers"`` puts in place of the dialect's own; it also adds
``retry-after-ms: nan``. Each looks like a number to a lax parser (``float()``, an unanchored
pattern), and none is a usable quota or delay."""


def mask_secret(secret: str) -> str:
    """The stable id under which a secret appears in stats: its last 8 characters."""
    return secret[-8:]


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /_fake/faults``."""

    key: str
    mode: FaultMode
    count: int | None = None
    retry_after_s: int = 1
    retry_after_ms: int | None = None
    delay_ms: int = 1000
    """``"slow"``: the wait before the headers; ``"long_stream"``: the wait between two events."""
    chunks: int = 10
    """``"long_stream"``: content deltas in the answer."""

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1, or null for until cleared")
        if self.retry_after_s < 0 or self.delay_ms < 0:
            raise ValueError("retry_after_s and delay_ms must be >= 0")
        if self.chunks < 1:
            raise ValueError("chunks must be >= 1")


def hostile(headers: Headers) -> Headers:
    """``headers`` with the dialect's rate-limit values replaced by ``HOSTILE_HEADERS``'s."""
    replaced = [(name, HOSTILE_HEADERS.get(name, value)) for name, value in headers]
    replaced.append((b"retry-after-ms", b"nan"))
    return replaced


class _Armed:
    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.count


class FaultBook:
    """The armed faults, by upstream secret."""

    def __init__(self) -> None:
        self._armed: dict[str, _Armed] = {}

    def arm(self, fault: Fault) -> None:
        self._armed[fault.key] = _Armed(fault)

    def clear(self, key: str | None = None) -> None:
        """Disarm every fault, or only the one of ``key``."""
        if key is None:
            self._armed.clear()
        else:
            self._armed.pop(key, None)

    def take(self, key: str) -> Fault | None:
        """The fault that hits this request of ``key``, counting it against the fault's count."""
        if not self._armed:
            return None
        slot = key if key in self._armed else ANY_KEY
        armed = self._armed.get(slot)
        if armed is None:
            return None
        if armed.remaining is not None:
            armed.remaining -= 1
            if armed.remaining <= 0:
                del self._armed[slot]
        return armed.fault

    def listing(self) -> list[dict[str, object]]:
        """The armed faults, secrets masked, for ``GET /_fake/faults``."""
        return [
            {
                "key": key if key == ANY_KEY else mask_secret(key),
                "mode": armed.fault.mode,
                "remaining": armed.remaining,
            }
            for key, armed in self._armed.items()
        ]


def fault_from_headers(headers: Iterable[tuple[bytes, bytes]], mode: str) -> Fault:
    """A one-off fault from ``x-fake-fault: <mode>`` and its optional companion headers.

    ``x-fake-retry-after-s``, ``x-fake-retry-after-ms``, ``x-fake-delay-ms`` and
    ``x-fake-chunks`` tune it. Raises ``ValueError`` on an unknown mode or a malformed number.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown x-fake-fault mode {mode!r}; expected one of {sorted(_MODES)}")
    retry_after_s, retry_after_ms, delay_ms, chunks = 1, None, 1000, 10
    for name, value in headers:
        if name == b"x-fake-retry-after-s":
            retry_after_s = int(value)
        elif name == b"x-fake-retry-after-ms":
            retry_after_ms = int(value)
        elif name == b"x-fake-delay-ms":
            delay_ms = int(value)
        elif name == b"x-fake-chunks":
            chunks = int(value)
    return msgspec.convert(
        {
            "key": "",
            "mode": mode,
            "count": 1,
            "retry_after_s": retry_after_s,
            "retry_after_ms": retry_after_ms,
            "delay_ms": delay_ms,
            "chunks": chunks,
        },
        Fault,
    )
