"""The items of a Responses request's ``input`` become Anthropic messages, turn by turn."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.translate.responses_input import anthropic_conversation

CALL = {"type": "function_call", "call_id": "toolu_1", "name": "get_weather",
        "arguments": '{"city": "Nice"}'}  # fmt: skip
OUTPUT = {"type": "function_call_output", "call_id": "toolu_1", "output": "21°C"}


def messages(*items: Any) -> list[dict[str, Any]]:
    return anthropic_conversation(None, list(items))[1]


def refused(*items: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        messages(*items)
    return caught.value


def test_system_and_developer_items_join_the_instructions_in_order() -> None:
    system, turns = anthropic_conversation(
        "Be brief.",
        [
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "input_text", "text": "Metric units."}]},
            {"type": "message", "role": "system", "content": "French."},
        ],
    )
    assert system == ["Be brief.", "Metric units.", "French."]
    assert turns == [{"role": "user", "content": "Hi"}]


def test_an_agent_loop_keeps_calls_with_the_assistant_and_results_with_the_user() -> None:
    assistant = {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]}  # fmt: skip
    second = {**CALL, "call_id": "toolu_2", "arguments": ""}
    assert messages(
        {"role": "user", "content": "Weather?"},
        assistant,
        CALL,
        second,
        OUTPUT,
        {**OUTPUT, "call_id": "toolu_2", "output": [{"type": "input_text", "text": "none"}]},
        {"role": "user", "content": "Thanks"},
    ) == [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Nice"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21°C"},
                {"type": "tool_result", "tool_use_id": "toolu_2",
                 "content": [{"type": "text", "text": "none"}]},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]  # fmt: skip


def test_user_parts_become_blocks() -> None:
    parts = [
        {"type": "input_text", "text": "Look:"},
        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "high"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
        {
            "type": "input_file",
            "file_data": "data:application/pdf;base64,JVBE",
            "filename": "a.pdf",
        },
        {"type": "input_file", "file_url": "https://x.test/b.pdf"},
    ]
    assert messages({"role": "user", "content": parts})[0]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "document", "title": "a.pdf",
         "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
        {"type": "document", "source": {"type": "url", "url": "https://x.test/b.pdf"}},
    ]  # fmt: skip


def test_assistant_refusals_and_empty_texts() -> None:
    content = [{"type": "refusal", "refusal": "I can't."}, {"type": "output_text", "text": ""}]
    assert messages({"role": "user", "content": "x"}, {"role": "assistant", "content": content})[
        1
    ] == {"role": "assistant", "content": [{"type": "text", "text": "I can't."}]}


def test_reasoning_items_are_left_out() -> None:
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"}
    assert messages({"role": "user", "content": "Hi"}, reasoning) == [
        {"role": "user", "content": "Hi"}
    ]


@pytest.mark.parametrize(
    ("item", "param", "code"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[0]", "unsupported_parameter"),
        ({"type": "web_search_call", "id": "ws_1"}, "input[0].type", "unsupported_parameter"),
        ({"type": "computer_call_output", "call_id": "c"}, "input[0].type", "unsupported_parameter"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input[0].content[0]",
         "unsupported_parameter"),
        ({"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]},
         "input[0].content[0].file_id", "unsupported_parameter"),
        ({"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]},
         "input[0].content[0].file_id", "unsupported_parameter"),
        ({"role": "tool", "content": "x"}, "input[0].role", None),
        ("Hi", "input[0]", None),
        ({"role": "user", "content": 5}, "input[0].content", None),
        ({"role": "user", "content": [{"type": "input_image"}]}, "input[0].content[0].image_url",
         None),
        ({"role": "user", "content": [{"type": "input_image", "image_url": "data:xyz"}]},
         "input[0].content[0].image_url", None),
        ({"role": "user", "content": [{"type": "input_file", "file_data": "JVBE"}]},
         "input[0].content[0].file_data", None),
        ({"role": "system", "content": [{"type": "input_image", "image_url": "u"}]},
         "input[0].content[0]", None),
        ({"role": "assistant", "content": [{"type": "input_image"}]}, "input[0].content[0]", None),
        ({**CALL, "call_id": None}, "input[0].call_id", None),
        ({**CALL, "name": ""}, "input[0].name", None),
        ({**CALL, "arguments": "[1, 2]"}, "input[0].arguments", None),
        ({**CALL, "arguments": "{not json"}, "input[0].arguments", None),
        ({**CALL, "arguments": "[" * 100_000}, "input[0].arguments", None),
        ({**OUTPUT, "call_id": 5}, "input[0].call_id", None),
        ({**OUTPUT, "output": {"text": "x"}}, "input[0].output", None),
        ({**OUTPUT, "output": [{"type": "output_text", "text": "x"}]}, "input[0].output[0]",
         "unsupported_parameter"),
    ],
)  # fmt: skip
def test_items_anthropic_cannot_take_are_refused_by_name(
    item: Any, param: str, code: str | None
) -> None:
    error = refused(item)
    assert (error.param, error.code) == (param, code)


def test_an_item_reference_says_to_send_items_whole() -> None:
    assert "store: false" in refused({"type": "item_reference", "id": "msg_1"}).message
