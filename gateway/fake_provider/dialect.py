"""How each API dialect spells its errors, request ids and rate-limit headers.

OpenAI: ``{"error": {"message", "type", "param", "code"}}``, ``x-request-id``, and
``x-ratelimit-*`` headers whose resets are Go-style durations ("1s", "6m0s", "250ms").
Anthropic: ``{"type": "error", "error": {"type", "message"}}``, ``request-id``, and
``anthropic-ratelimit-*`` headers whose resets are RFC 3339 instants.
"""

from __future__ import annotations

import functools
import time
from typing import Protocol

import msgspec

from gateway.fake_provider.asgi import JSON_CONTENT_TYPE, Headers, Send, send_body
from gateway.fake_provider.quota import QuotaSnapshot
from gateway.fake_provider.reply import new_id

__all__ = [
    "ANTHROPIC",
    "OPENAI",
    "AnthropicDialect",
    "Dialect",
    "OpenAIDialect",
    "go_duration",
    "send_error",
]

_encoder = msgspec.json.Encoder()


class Dialect(Protocol):
    """What the request pipeline needs to know about the API it is faking."""

    name: str

    def json_headers(self) -> Headers:
        """Fresh headers for a JSON body outside the rate limits: content type and a new request id."""
        ...

    def error_body(
        self,
        status: int,
        message: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> bytes:
        """The error object for ``status`` (a stock message and code when none is given);
        ``param`` and ``code`` only where the dialect has them."""
        ...

    def headers(self, snapshot: QuotaSnapshot) -> Headers:
        """Fresh headers for a response (no content type): a new request id and the rate limits."""
        ...


@functools.lru_cache(maxsize=4096)
def _go_duration_ms(milliseconds: int) -> bytes:
    return go_duration(milliseconds / 1000).encode()


def go_duration(seconds: float) -> str:
    """A duration as OpenAI's rate-limit headers write it: "250ms", "1s", "6m0s", "1h0m0s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def _rfc3339(seconds_from_now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds_from_now + 0.999))


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    404: ("invalid_request_error", None, "Not found."),
    405: ("invalid_request_error", None, "Method not allowed."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    529: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "Not found."),
    405: ("invalid_request_error", "Method not allowed."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}


class OpenAIDialect:
    name = "openai"

    def json_headers(self) -> Headers:
        return [JSON_CONTENT_TYPE, (b"x-request-id", new_id("req_").encode())]

    def error_body(
        self,
        status: int,
        message: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> bytes:
        kind, stock_code, stock = _OPENAI_ERRORS.get(status, _OPENAI_ERRORS[500])
        error = {
            "message": message or stock,
            "type": kind,
            "param": param,
            "code": code or stock_code,
        }
        return _encoder.encode({"error": error})

    def headers(self, snapshot: QuotaSnapshot) -> Headers:
        requests_reset = _go_duration_ms(round(snapshot.reset_requests_s * 1000))
        tokens_reset = (
            requests_reset
            if snapshot.reset_tokens_s == snapshot.reset_requests_s
            else _go_duration_ms(round(snapshot.reset_tokens_s * 1000))
        )
        return [
            (b"x-request-id", new_id("req_").encode()),
            (b"x-ratelimit-limit-requests", b"%d" % snapshot.limit_requests),
            (b"x-ratelimit-remaining-requests", b"%d" % snapshot.remaining_requests),
            (b"x-ratelimit-reset-requests", requests_reset),
            (b"x-ratelimit-limit-tokens", b"%d" % snapshot.limit_tokens),
            (b"x-ratelimit-remaining-tokens", b"%d" % snapshot.remaining_tokens),
            (b"x-ratelimit-reset-tokens", tokens_reset),
        ]


class AnthropicDialect:
    name = "anthropic"

    def json_headers(self) -> Headers:
        return [JSON_CONTENT_TYPE, (b"request-id", new_id("req_").encode())]

    def error_body(
        self,
        status: int,
        message: str | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> bytes:
        kind, stock = _ANTHROPIC_ERRORS.get(status, _ANTHROPIC_ERRORS[500])
        return _encoder.encode(
            {"type": "error", "error": {"type": kind, "message": message or stock}}
        )

    def headers(self, snapshot: QuotaSnapshot) -> Headers:
        requests_reset = _rfc3339(snapshot.reset_requests_s).encode()
        tokens_reset = (
            requests_reset
            if snapshot.reset_tokens_s == snapshot.reset_requests_s
            else _rfc3339(snapshot.reset_tokens_s).encode()
        )
        return [
            (b"request-id", new_id("req_").encode()),
            (b"anthropic-ratelimit-requests-limit", b"%d" % snapshot.limit_requests),
            (b"anthropic-ratelimit-requests-remaining", b"%d" % snapshot.remaining_requests),
            (b"anthropic-ratelimit-requests-reset", requests_reset),
            (b"anthropic-ratelimit-tokens-limit", b"%d" % snapshot.limit_tokens),
            (b"anthropic-ratelimit-tokens-remaining", b"%d" % snapshot.remaining_tokens),
            (b"anthropic-ratelimit-tokens-reset", tokens_reset),
        ]


OPENAI: Dialect = OpenAIDialect()
ANTHROPIC: Dialect = AnthropicDialect()


async def send_error(
    send: Send,
    dialect: Dialect,
    status: int,
    message: str | None = None,
    headers: Headers | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> None:
    """Send the error object of ``dialect`` for ``status``, with ``headers`` if given."""
    if headers is None:
        headers = dialect.json_headers()
    else:
        headers.append(JSON_CONTENT_TYPE)
    await send_body(send, status, headers, dialect.error_body(status, message, param, code))
