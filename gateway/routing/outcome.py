"""What an upstream answer means for the key that sent it: outcome class and learned quota.

2xx                      ok
429                      rate_limited  -> cooldown until Retry-After (capped, jittered)
401, 403                 auth_error    -> key disabled until an operator re-enables it
408, 5xx, 529, no answer server_error  -> counts toward the key's circuit breaker
3xx (and a final 1xx)    server_error  -> likewise: no answer, and never followed (a redirect
                                          would take the key's secret wherever it points)
other 4xx                client_error  -> the request's fault: returned to the client as is

The quota and retry headers come from the upstream and are parsed defensively: a value that is
not a plain non-negative decimal number (or duration, or date) is ignored as if it were absent,
and counted in `keyway_upstream_values_ignored_total`; a number too large to mean anything is
clamped (`MAX_REMAINING`, `MAX_DURATION_MS`). No header value can make these functions raise.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final

from gateway.telemetry.metrics import get_metrics

__all__ = [
    "MAX_DURATION_MS",
    "MAX_REMAINING",
    "Learned",
    "Outcome",
    "classify",
    "cooldown_ms",
    "learn_quota",
    "parse_duration_ms",
]

MAX_REMAINING: Final = 2**31 - 1
"""A remaining-requests or -tokens count above this is taken as this."""
MAX_DURATION_MS: Final = 86_400_000
"""A reset or retry delay above a day is taken as a day."""


class Outcome:
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    AUTH_ERROR = "auth_error"
    CLIENT_ERROR = "client_error"
    CANCELLED = "cancelled"
    REFUND = "refund"


def classify(status: int) -> str:
    if 200 <= status < 300:
        return Outcome.OK
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in (401, 403):
        return Outcome.AUTH_ERROR
    if status == 408 or status >= 500 or status < 400:  # < 400: a redirect, a final 1xx
        return Outcome.SERVER_ERROR
    return Outcome.CLIENT_ERROR


# ASCII only: Python's float() would also take "inf", "nan", "1_000", a sign and non-ASCII digits
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Go's time.Duration spelling; below a second it writes ms, µs or ns
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|us|µs|ns|h|m|s)")
_UNIT_MS: Final = {"h": 3_600_000.0, "m": 60_000.0, "s": 1000.0, "ms": 1.0, "us": 1e-3,
                   "µs": 1e-3, "ns": 1e-6}  # fmt: skip


def _number(text: str) -> float | None:
    """A non-negative decimal number ("12", "0.5", "1e3"); None for anything else.

    A number too large for a float (1e400, 400 digits) comes back as inf, for the caller to clamp.
    """
    text = text.strip()
    if _NUMBER.fullmatch(text) is None:
        return None
    return float(text)


def parse_duration_ms(text: str) -> int | None:
    """OpenAI's reset format ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds -> ms.

    None for anything else (empty, negative, "inf", "nan", other units); at most a day.
    """
    seconds = _number(text)
    if seconds is not None:
        return int(min(seconds * 1000, MAX_DURATION_MS))
    text = text.strip()
    if not text:
        return None
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    return int(min(total, MAX_DURATION_MS)) if pos == len(text) else None


def _rfc3339_in_ms(text: str) -> int | None:
    """Milliseconds from now until an RFC 3339 time: 0 if it has passed, at most a day."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        seconds = moment.timestamp() - time.time()
    except (ValueError, OverflowError, OSError):  # not a date; a naive one out of mktime's range
        return None
    return int(min(max(seconds * 1000, 0.0), MAX_DURATION_MS))


def _ignored(header: str) -> None:
    get_metrics().upstream_value_ignored(header)


def _remaining(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name)
    if value is None:
        return -1
    number = _number(value)
    if number is None:
        _ignored(name)
        return -1
    return int(min(number, MAX_REMAINING))


def _latest_reset(headers: Mapping[str, str], names: tuple[str, str], rfc3339: bool) -> int:
    latest = -1
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        ms = _rfc3339_in_ms(value) if rfc3339 else parse_duration_ms(value)
        if ms is None:
            _ignored(name)
        else:
            latest = max(latest, ms)
    return latest


@dataclass(frozen=True, slots=True)
class Learned:
    """Remaining upstream quota as the provider reported it; -1 where it said nothing usable."""

    remaining_requests: int = -1
    remaining_tokens: int = -1
    reset_ms: int = -1


NOTHING_LEARNED = Learned()

_OPENAI_RESETS: Final = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_ANTHROPIC_RESETS: Final = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
)


def learn_quota(headers: Mapping[str, str]) -> Learned:
    """Read OpenAI `x-ratelimit-*` or Anthropic `anthropic-ratelimit-*` headers."""
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        return Learned(
            remaining_requests=_remaining(headers, "x-ratelimit-remaining-requests"),
            remaining_tokens=_remaining(headers, "x-ratelimit-remaining-tokens"),
            reset_ms=_latest_reset(headers, _OPENAI_RESETS, rfc3339=False),
        )
    if "anthropic-ratelimit-requests-remaining" in headers:
        return Learned(
            remaining_requests=_remaining(headers, "anthropic-ratelimit-requests-remaining"),
            remaining_tokens=_remaining(headers, "anthropic-ratelimit-tokens-remaining"),
            reset_ms=_latest_reset(headers, _ANTHROPIC_RESETS, rfc3339=True),
        )
    return NOTHING_LEARNED


def _retry_after_ms(value: str) -> float | None:
    """Retry-After in ms: delay-seconds or an HTTP date (negative once passed); None if neither."""
    seconds = _number(value)
    if seconds is not None:
        return seconds * 1000
    try:
        moment = parsedate_to_datetime(value.strip())
        return (moment.timestamp() - time.time()) * 1000
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def cooldown_ms(headers: Mapping[str, str], *, default_s: float, max_s: float) -> int:
    """How long a 429'd key rests: retry-after-ms, Retry-After (seconds or HTTP date), else default.

    Capped at `max_s` and stretched by up to 10% of jitter so keys do not return in lockstep.
    A date already passed means the default, as does a value that says nothing usable.
    """
    wait: float | None = None
    value = headers.get("retry-after-ms")
    if value is not None:
        wait = _number(value)
        if wait is None:
            _ignored("retry-after-ms")
    value = headers.get("retry-after")
    if wait is None and value is not None:
        wait = _retry_after_ms(value)
        if wait is None:
            _ignored("retry-after")
    if wait is None or wait < 0:
        wait = default_s * 1000
    wait = min(wait, max_s * 1000)
    return int(wait * (1 + random.random() * 0.1))
