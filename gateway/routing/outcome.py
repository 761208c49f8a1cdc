"""What an upstream answer means for the key that sent it: outcome class and learned quota.

2xx                      ok
429                      rate_limited  -> cooldown until Retry-After (capped, jittered)
401, 403                 auth_error    -> key disabled until an operator re-enables it
408, 5xx, 529, no answer server_error  -> counts toward the key's circuit breaker
other 4xx                client_error  -> the request's fault: returned to the client as is
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Learned", "Outcome", "classify", "cooldown_ms", "learn_quota", "parse_duration_ms"]


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
    if status == 408 or status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.CLIENT_ERROR


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration_ms(text: str) -> int | None:
    """OpenAI's reset format ("1s", "6m0s", "20ms", "1h2m3.5s") or plain seconds -> ms."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[unit]
        pos = match.end()
    return int(total) if pos == len(text) else None


def _rfc3339_in_ms(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0, int((moment.timestamp() - time.time()) * 1000))


def _int(value: str | None) -> int:
    if value is None:
        return -1
    try:
        return max(0, int(float(value)))
    except ValueError:
        return -1


@dataclass(frozen=True, slots=True)
class Learned:
    """Remaining upstream quota as the provider reported it; -1 where it said nothing."""

    remaining_requests: int = -1
    remaining_tokens: int = -1
    reset_ms: int = -1


NOTHING_LEARNED = Learned()


def learn_quota(headers: Mapping[str, str]) -> Learned:
    """Read OpenAI `x-ratelimit-*` or Anthropic `anthropic-ratelimit-*` headers."""
    if "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers:
        resets = [
            parse_duration_ms(headers[h])
            for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
            if h in headers
        ]
        known = [r for r in resets if r is not None]
        return Learned(
            remaining_requests=_int(headers.get("x-ratelimit-remaining-requests")),
            remaining_tokens=_int(headers.get("x-ratelimit-remaining-tokens")),
            reset_ms=max(known) if known else -1,
        )
    if "anthropic-ratelimit-requests-remaining" in headers:
        resets = [
            _rfc3339_in_ms(headers[h])
            for h in ("anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset")
            if h in headers
        ]
        known = [r for r in resets if r is not None]
        return Learned(
            remaining_requests=_int(headers.get("anthropic-ratelimit-requests-remaining")),
            remaining_tokens=_int(headers.get("anthropic-ratelimit-tokens-remaining")),
            reset_ms=max(known) if known else -1,
        )
    return NOTHING_LEARNED


def cooldown_ms(headers: Mapping[str, str], *, default_s: float, max_s: float) -> int:
    """How long a 429'd key rests: retry-after-ms, Retry-After (seconds or HTTP date), else default.

    Capped at `max_s` and stretched by up to 10% of jitter so keys do not return in lockstep.
    """
    wait: float | None = None
    if "retry-after-ms" in headers:
        try:
            wait = float(headers["retry-after-ms"])
        except ValueError:
            wait = None
    if wait is None and "retry-after" in headers:
        value = headers["retry-after"].strip()
        try:
            wait = float(value) * 1000
        except ValueError:
            try:
                from email.utils import parsedate_to_datetime

                wait = (parsedate_to_datetime(value).timestamp() - time.time()) * 1000
            except (TypeError, ValueError):
                wait = None
    if wait is None or wait < 0:
        wait = default_s * 1000
    wait = min(wait, max_s * 1000)
    return int(wait * (1 + random.random() * 0.1))
