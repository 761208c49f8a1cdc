"""Pure translation between the OpenAI Chat Completions and Anthropic Messages dialects.

Requests, complete responses, streams and error bodies, in both directions; no I/O. Each
module's docstring maps its fields and lists what has no counterpart and is dropped.
"""

from __future__ import annotations

from gateway.translate.error_bodies import anthropic_error_to_openai, openai_error_to_anthropic
from gateway.translate.request_to_anthropic import openai_chat_to_anthropic
from gateway.translate.request_to_openai import anthropic_to_openai_chat
from gateway.translate.response import (
    anthropic_message_to_openai_chat,
    openai_chat_to_anthropic_message,
)
from gateway.translate.sse import (
    OPENAI_DONE,
    SSEEvent,
    SSEParser,
    encode_anthropic_event,
    encode_openai_chunk,
)
from gateway.translate.stream_to_anthropic import OpenAIToAnthropicStream
from gateway.translate.stream_to_openai import AnthropicToOpenAIStream

__all__ = [
    "OPENAI_DONE",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "SSEEvent",
    "SSEParser",
    "anthropic_error_to_openai",
    "anthropic_message_to_openai_chat",
    "anthropic_to_openai_chat",
    "encode_anthropic_event",
    "encode_openai_chunk",
    "openai_chat_to_anthropic",
    "openai_chat_to_anthropic_message",
    "openai_error_to_anthropic",
]
