"""The one error hierarchy of Keyway, each error rendered in the dialect of the endpoint called.

    GatewayError                      any error a client sees
    ├── BadRequest              400   malformed JSON, missing or wrong fields
    ├── Unauthorized            401   missing or unknown client key
    ├── Forbidden               403   model not allowed for this client key
    ├── NotFound                404   unknown model alias or route
    ├── MethodNotAllowed        405   wrong HTTP method for the route
    ├── PayloadTooLarge         413   body above the configured cap
    ├── RateLimited             429   client limit, budget, or every upstream key exhausted
    ├── InternalError           500   a defect of Keyway's (state settled, traceback logged)
    ├── UpstreamError           502   upstream failed after every retry
    ├── ServiceUnavailable      503   no upstream key usable (disabled, breaker open) / not ready
    └── UpstreamTimeout         504   upstream did not answer in time

An error carries no secret: messages are written by Keyway, never copied from a request header.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "BadRequest",
    "Forbidden",
    "GatewayError",
    "InternalError",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "UpstreamError",
    "UpstreamTimeout",
    "anthropic_error_body",
    "openai_error_body",
    "unreadable_answer",
    "upstream_redirect",
]

_encoder = msgspec.json.Encoder()


class GatewayError(Exception):
    """An error with an HTTP status and a body in either dialect."""

    status: int = 500
    openai_type: str = "server_error"
    anthropic_type: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after_s is None:
            return []
        return [(b"retry-after", str(max(1, self.retry_after_s)).encode())]


class BadRequest(GatewayError):
    status = 400
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"


class Forbidden(GatewayError):
    status = 403
    openai_type = "permission_error"
    anthropic_type = "permission_error"


class NotFound(GatewayError):
    status = 404
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"


class MethodNotAllowed(GatewayError):
    """A known path called with the wrong method; `allow` is the method it takes (RFC 9110 15.5.6)."""

    status = 405
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"

    def __init__(self, message: str, *, allow: str, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.allow = allow

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"allow", self.allow.encode())]


class PayloadTooLarge(GatewayError):
    status = 413
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"


class InternalError(GatewayError):
    """A defect of Keyway's own: the request's state was settled; the log has the traceback."""

    status = 500
    openai_type = "server_error"
    anthropic_type = "api_error"


class UpstreamError(GatewayError):
    status = 502
    openai_type = "upstream_error"
    anthropic_type = "api_error"


class ServiceUnavailable(GatewayError):
    status = 503
    openai_type = "service_unavailable"
    anthropic_type = "overloaded_error"


class UpstreamTimeout(GatewayError):
    status = 504
    openai_type = "timeout"
    anthropic_type = "timeout_error"


def unreadable_answer(body: bytes) -> UpstreamError:
    """A 2xx whose body is not the JSON object its endpoint answers with."""
    return UpstreamError(
        f"the upstream sent an unreadable answer ({len(body)} bytes)", code="bad_upstream_body"
    )


def upstream_redirect(status: int) -> UpstreamError:
    """A 3xx: no answer. Followed, it would take the key's secret to wherever it points; relayed,
    it would send the client there."""
    return UpstreamError(
        f"the upstream answered with a redirect ({status}), which Keyway does not follow",
        code="upstream_redirect",
    )


def openai_error_body(err: GatewayError) -> bytes:
    """`{"error": {"message", "type", "param", "code"}}` as OpenAI sends it."""
    return _encoder.encode(
        {
            "error": {
                "message": err.message,
                "type": err.openai_type,
                "param": err.param,
                "code": err.code,
            }
        }
    )


def anthropic_error_body(err: GatewayError) -> bytes:
    """`{"type": "error", "error": {"type", "message"}}` as Anthropic sends it."""
    return _encoder.encode(
        {"type": "error", "error": {"type": err.anthropic_type, "message": err.message}}
    )
