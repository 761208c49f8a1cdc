"""An upstream error body rewritten into the other dialect, keeping its meaning and message.

    OpenAI error type / HTTP status              Anthropic error type
    400, 422, invalid_request_error         <->  invalid_request_error
    401, authentication_error               <->  authentication_error
    402, insufficient_quota                 <->  billing_error
    403, permission_error                   <->  permission_error
    404, (not_found_error)                   ->  not_found_error    (OpenAI: invalid_request_error)
    413                                      ->  request_too_large  (OpenAI: invalid_request_error)
    429, rate_limit_error, tokens, requests <->  rate_limit_error
    500, server_error                       <->  api_error
    503, 529, service_unavailable           <->  overloaded_error
    408, 504, timeout                       <->  timeout_error

OpenAI's ``type`` is loose (a 429 may say ``tokens``, a 401 ``invalid_request_error``), so going
to Anthropic the status decides and the type only breaks ties; Anthropic's ``type`` is exact, so
going to OpenAI the type decides. The status code itself is the caller's to keep. A body that is
not the expected JSON (an HTML page from a proxy, plain text, ``{"detail": ...}``) still yields a
well-formed error whose message is that text, cut to ``MESSAGE_LIMIT`` characters.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "MESSAGE_LIMIT",
    "anthropic_error_to_openai",
    "anthropic_error_type",
    "openai_error_to_anthropic",
    "openai_error_type",
]

MESSAGE_LIMIT = 1000
"""Longest message copied from a body that is not a recognised error object."""

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

_ANTHROPIC_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_ANTHROPIC_BY_OPENAI_TYPE = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "insufficient_quota": "billing_error",
    "rate_limit_error": "rate_limit_error",
    "tokens": "rate_limit_error",
    "requests": "rate_limit_error",
    "server_error": "api_error",
    "upstream_error": "api_error",
    "service_unavailable": "overloaded_error",
    "timeout": "timeout_error",
}
_OPENAI_BY_ANTHROPIC_TYPE = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "billing_error": "insufficient_quota",
    "permission_error": "permission_error",
    "not_found_error": "invalid_request_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "service_unavailable",
    "timeout_error": "timeout",
}
_OPENAI_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    408: "timeout",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
    529: "service_unavailable",
}


def anthropic_error_type(openai_type: object, status: int | None = None) -> str:
    """The Anthropic error type for an OpenAI error type and (when known) HTTP status."""
    if status in _ANTHROPIC_BY_STATUS:
        return _ANTHROPIC_BY_STATUS[status]
    if isinstance(openai_type, str) and openai_type in _ANTHROPIC_BY_OPENAI_TYPE:
        return _ANTHROPIC_BY_OPENAI_TYPE[openai_type]
    return "invalid_request_error" if status is not None and 400 <= status < 500 else "api_error"


def openai_error_type(anthropic_type: object, status: int | None = None) -> str:
    """The OpenAI error type for an Anthropic error type and (when known) HTTP status."""
    if isinstance(anthropic_type, str) and anthropic_type in _OPENAI_BY_ANTHROPIC_TYPE:
        return _OPENAI_BY_ANTHROPIC_TYPE[anthropic_type]
    if status in _OPENAI_BY_STATUS:
        return _OPENAI_BY_STATUS[status]
    return "invalid_request_error" if status is not None and 400 <= status < 500 else "server_error"


def openai_error_to_anthropic(status: int, body: bytes) -> bytes:
    """``{"type":"error","error":{type,message}}`` for an OpenAI error response."""
    error, message = _error_and_message(status, body)
    kind = anthropic_error_type(error.get("type"), status)
    return _encoder.encode({"type": "error", "error": {"type": kind, "message": message}})


def anthropic_error_to_openai(status: int, body: bytes) -> bytes:
    """``{"error":{message,type,param,code}}`` for an Anthropic error response."""
    error, message = _error_and_message(status, body)
    kind = openai_error_type(error.get("type"), status)
    return _encoder.encode(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}
    )


def _error_and_message(status: int, body: bytes) -> tuple[dict[str, Any], str]:
    """The error object found in ``body`` (possibly empty) and the best message for it."""
    try:
        document: Any = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, str) and message:
                return error, message
            return error, _fallback(status, body)
        for key in ("error", "message", "detail"):
            if isinstance(document.get(key), str) and document[key]:
                return {}, _clip(document[key])
    return {}, _fallback(status, body)


def _fallback(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return _clip(text) if text else f"upstream returned HTTP {status}"


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "..."
