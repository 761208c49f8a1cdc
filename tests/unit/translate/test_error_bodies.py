"""Upstream error bodies keep their meaning and message in the other dialect."""

from __future__ import annotations

import msgspec
import pytest

from gateway.translate.error_bodies import (
    MESSAGE_LIMIT,
    anthropic_error_to_openai,
    openai_error_to_anthropic,
)


@pytest.mark.parametrize(
    ("status", "openai_type", "anthropic_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "invalid_request_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "invalid_request_error", "not_found_error"),
        (413, "invalid_request_error", "request_too_large"),
        (429, "tokens", "rate_limit_error"),
        (429, "insufficient_quota", "rate_limit_error"),
        (500, "server_error", "api_error"),
        (500, "insufficient_quota", "billing_error"),
        (503, "service_unavailable", "overloaded_error"),
        (504, "timeout", "timeout_error"),
        (418, "something_new", "invalid_request_error"),
        (599, "something_new", "api_error"),
    ],
)
def test_openai_error_to_anthropic(status: int, openai_type: str, anthropic_type: str) -> None:
    body = msgspec.json.encode(
        {
            "error": {
                "message": "Rate limit reached for gpt-4o",
                "type": openai_type,
                "param": None,
                "code": "x",
            }
        }
    )
    assert msgspec.json.decode(openai_error_to_anthropic(status, body)) == {
        "type": "error",
        "error": {"type": anthropic_type, "message": "Rate limit reached for gpt-4o"},
    }


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (401, "authentication_error", "authentication_error"),
        (402, "billing_error", "insufficient_quota"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "invalid_request_error"),
        (413, "request_too_large", "invalid_request_error"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (529, "overloaded_error", "service_unavailable"),
        (504, "timeout_error", "timeout"),
        (529, "brand_new_error", "service_unavailable"),
        (500, "brand_new_error", "server_error"),
    ],
)
def test_anthropic_error_to_openai(status: int, anthropic_type: str, openai_type: str) -> None:
    body = msgspec.json.encode(
        {
            "type": "error",
            "error": {"type": anthropic_type, "message": "Overloaded"},
            "request_id": "req_1",
        }
    )
    assert msgspec.json.decode(anthropic_error_to_openai(status, body)) == {
        "error": {"message": "Overloaded", "type": openai_type, "param": None, "code": None}
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "<html><body>502 Bad Gateway</body></html>"),
        (b"", "upstream returned HTTP 502"),
        (b"  \n", "upstream returned HTTP 502"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"error": "model overloaded"}', "model overloaded"),
        (b'{"error": {"type": "server_error"}}', '{"error": {"type": "server_error"}}'),
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
        (b"[1, 2]", "[1, 2]"),
    ],
)
def test_bodies_that_are_not_error_objects_still_give_well_formed_errors(
    body: bytes, message: str
) -> None:
    assert msgspec.json.decode(openai_error_to_anthropic(502, body)) == {
        "type": "error",
        "error": {"type": "api_error", "message": message},
    }
    assert msgspec.json.decode(anthropic_error_to_openai(502, body)) == {
        "error": {"message": message, "type": "server_error", "param": None, "code": None}
    }


def test_long_bodies_are_clipped() -> None:
    out = msgspec.json.decode(openai_error_to_anthropic(500, b"x" * 5000))
    assert out["error"]["message"] == "x" * MESSAGE_LIMIT + "..."
