"""Structured output: a schema keeps its promise in both dialects, or the request is a 400."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate.structured_output import anthropic_output_format, openai_response_format

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def test_a_schema_survives_both_ways() -> None:
    openai = openai_response_format(
        {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}
    )
    assert openai == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }
    assert anthropic_output_format(openai) == {"type": "json_schema", "schema": SCHEMA}


def test_output_config_format_wins_over_the_beta_spelling() -> None:
    body = {
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        "output_format": {"type": "json_schema", "schema": {"type": "string"}},
    }
    assert openai_response_format(body)["json_schema"]["schema"] == SCHEMA  # type: ignore[index]


@pytest.mark.parametrize(
    "body", [{}, {"output_config": {"effort": "low"}}, {"output_config": {"format": None}}]
)
def test_no_format_asks_for_none(body: dict[str, Any]) -> None:
    assert openai_response_format(body) is None


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_object"}, "response_format"),
        ({"type": "grammar", "grammar": "x"}, "response_format"),
        ("json", "response_format"),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_formats_without_a_counterpart_are_unsupported(response_format: Any, param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        anthropic_output_format(response_format)
    assert (caught.value.code, caught.value.param) == ("unsupported_parameter", param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"output_config": "json"}, "output_config"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
    ],
)
def test_a_malformed_format_is_a_bad_request(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as caught:
        openai_response_format(body)
    assert caught.value.param == param
