"""Injected failures: what the next requests made with a given upstream key should suffer.

Modes: ``"429"``, ``"500"``, ``"503"``, ``"529"``, ``"401"`` answer that status in the dialect
of the endpoint; ``"hang"`` never answers until the client gives up; ``"slow"`` adds
``delay_ms`` before the headers; ``"cut"`` starts the response, then drops the connection
before its end. A fault armed for key ``"*"`` applies to every key that has none of its own.
Arming a key again replaces its fault. ``count`` is how many requests it hits (None: until
cleared).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

__all__ = [
    "ANY_KEY",
    "ERROR_MODES",
    "Fault",
    "FaultBook",
    "FaultMode",
    "fault_from_headers",
    "mask_secret",
]

FaultMode = Literal["429", "500", "503", "529", "401", "hang", "slow", "cut"]
ERROR_MODES: frozenset[str] = frozenset({"429", "500", "503", "529", "401"})
_MODES: frozenset[str] = ERROR_MODES | {"hang", "slow", "cut"}
ANY_KEY = "*"


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

    def __post_init__(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1, or null for until cleared")
        if self.retry_after_s < 0 or self.delay_ms < 0:
            raise ValueError("retry_after_s and delay_ms must be >= 0")


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

    ``x-fake-retry-after-s``, ``x-fake-retry-after-ms`` and ``x-fake-delay-ms`` tune it.
    Raises ``ValueError`` on an unknown mode or a malformed number.
    """
    if mode not in _MODES:
        raise ValueError(f"unknown x-fake-fault mode {mode!r}; expected one of {sorted(_MODES)}")
    retry_after_s, retry_after_ms, delay_ms = 1, None, 1000
    for name, value in headers:
        if name == b"x-fake-retry-after-s":
            retry_after_s = int(value)
        elif name == b"x-fake-retry-after-ms":
            retry_after_ms = int(value)
        elif name == b"x-fake-delay-ms":
            delay_ms = int(value)
    return msgspec.convert(
        {
            "key": "",
            "mode": mode,
            "count": 1,
            "retry_after_s": retry_after_s,
            "retry_after_ms": retry_after_ms,
            "delay_ms": delay_ms,
        },
        Fault,
    )
