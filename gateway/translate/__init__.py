"""Pure translation between the OpenAI (Chat Completions, Responses) and Anthropic dialects.

Requests, complete responses, streams and error bodies, in both directions for chat and towards
Anthropic for the Responses API; no I/O. Each module's docstring maps its fields and lists what
has no counterpart and is dropped.
"""

from __future__ import annotations

from gateway.translate.anthropic_to_responses import (
    anthropic_message_to_response,
    response_settings,
)
from gateway.translate.error_bodies import anthropic_error_to_openai, openai_error_to_anthropic
from gateway.translate.output_limits import clamp_max_tokens, known_max_output_tokens, over_limit
from gateway.translate.request_to_anthropic import openai_chat_to_anthropic
from gateway.translate.request_to_openai import anthropic_to_openai_chat
from gateway.translate.response import (
    anthropic_message_to_openai_chat,
    openai_chat_to_anthropic_message,
)
from gateway.translate.responses_to_anthropic import responses_to_anthropic
from gateway.translate.sse import (
    OPENAI_DONE,
    SSEEvent,
    SSEParser,
    encode_anthropic_event,
    encode_openai_chunk,
)
from gateway.translate.stream_to_anthropic import OpenAIToAnthropicStream
from gateway.translate.stream_to_openai import AnthropicToOpenAIStream
from gateway.translate.stream_to_responses import AnthropicToResponsesStream

__all__ = [
    "OPENAI_DONE",
    "AnthropicToOpenAIStream",
    "AnthropicToResponsesStream",
    "OpenAIToAnthropicStream",
    "SSEEvent",
    "SSEParser",
    "anthropic_error_to_openai",
    "anthropic_message_to_openai_chat",
    "anthropic_message_to_response",
    "anthropic_to_openai_chat",
    "clamp_max_tokens",
    "encode_anthropic_event",
    "encode_openai_chunk",
    "known_max_output_tokens",
    "openai_chat_to_anthropic",
    "openai_chat_to_anthropic_message",
    "openai_error_to_anthropic",
    "over_limit",
    "response_settings",
    "responses_to_anthropic",
]
