"""The OpenAI wire format as the fake provider speaks it: requests read, bodies and SSE chunks built.

Shapes follow what api.openai.com sends: chat completions (text or ``tool_calls``), their
``chat.completion.chunk`` streams (role chunk, content deltas, finish chunk, optional usage
chunk with ``choices: []``, then ``[DONE]``), legacy ``text_completion``, embeddings and models.
A ``response_format`` of type ``json_schema`` or ``json_object`` makes the text a JSON document.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from gateway.fake_provider.reply import (
    Reply,
    ToolAnswer,
    embedding_vector,
    encode_embedding,
    estimate_tokens,
    new_id,
)

__all__ = [
    "DONE",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "chat_body",
    "chat_chunks",
    "chat_prompt_tokens",
    "chosen_tool",
    "completion_body",
    "completion_chunks",
    "embeddings_body",
    "message_text",
    "models_body",
    "output_schema",
    "prompt_tokens_of",
]

DONE = b"data: [DONE]\n\n"
_FINGERPRINT = "fp_fake0001"
_encoder = msgspec.json.Encoder()


# -- requests ---------------------------------------------------------------------------------


class TextPart(msgspec.Struct):
    text: str | None = None


class ChatMessage(msgspec.Struct):
    role: str = "user"
    content: str | list[TextPart] | None = None


class FunctionSpec(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSpec(msgspec.Struct):
    type: str = "function"
    function: FunctionSpec | None = None


class FunctionName(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: FunctionName | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = False


class ChatRequest(msgspec.Struct):
    """api.openai.com takes null for `stream` and `stream_options` as not given (no stream, no
    usage chunk), so the fake does too: a gateway passing a client's nulls on must not get a 400."""

    model: str = ""
    messages: list[ChatMessage] = msgspec.field(default_factory=list)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | NamedToolChoice | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    user: str | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(msgspec.Struct):
    model: str = ""
    prompt: Any = ""
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None


class EmbeddingRequest(msgspec.Struct):
    model: str = ""
    input: Any = None
    dimensions: int | None = None
    encoding_format: str = "float"


def chat_prompt_tokens(request: ChatRequest) -> int:
    """The fake token count of every message's text."""
    return estimate_tokens(sum(len(message_text(message)) for message in request.messages))


def message_text(message: ChatMessage) -> str:
    """The text of a message, its parts joined."""
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content or ())


def output_schema(request: ChatRequest) -> dict[str, Any] | None:
    """The JSON schema the answer must satisfy (``json_object``: any object); None for text."""
    response_format = request.response_format or {}
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else {"type": "object"}


def prompt_tokens_of(prompt: Any) -> int:
    """The fake token count of a legacy prompt or embedding input (text, texts or token ids)."""
    if isinstance(prompt, str):
        return estimate_tokens(len(prompt))
    if isinstance(prompt, list):
        if all(isinstance(item, int) for item in prompt):
            return max(1, len(prompt))
        return sum(prompt_tokens_of(item) for item in prompt)
    return 1


def chosen_tool(request: ChatRequest) -> FunctionSpec | None:
    """The function the fake model calls: the named ``tool_choice``, else the first tool.

    No call when there are no function tools, when ``tool_choice`` is "none", or when the last
    message is a tool result (the model then answers in text, which ends an agent loop).
    """
    functions = [tool.function for tool in request.tools or () if tool.function is not None]
    if not functions or request.tool_choice == "none":
        return None
    if request.messages and request.messages[-1].role == "tool":
        return None
    choice = request.tool_choice
    if isinstance(choice, NamedToolChoice) and choice.function is not None:
        named = choice.function.name
        return next((f for f in functions if f.name == named), functions[0])
    return functions[0]


# -- responses --------------------------------------------------------------------------------


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    type: str = "function"
    function: FunctionCall


class AssistantMessage(msgspec.Struct):
    role: str
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | UnsetType = UNSET


class Choice(msgspec.Struct):
    index: int
    message: AssistantMessage
    logprobs: None
    finish_reason: str


class ChatCompletion(msgspec.Struct):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    service_tier: str = "default"
    system_fingerprint: str = _FINGERPRINT


class FunctionDelta(msgspec.Struct):
    name: str | UnsetType = UNSET
    arguments: str = ""


class ToolCallDelta(msgspec.Struct):
    index: int
    id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    function: FunctionDelta | UnsetType = UNSET


class Delta(msgspec.Struct):
    role: str | UnsetType = UNSET
    content: str | UnsetType | None = UNSET
    tool_calls: list[ToolCallDelta] | UnsetType = UNSET
    refusal: UnsetType | None = UNSET


class ChunkChoice(msgspec.Struct):
    index: int
    delta: Delta
    logprobs: None
    finish_reason: str | None


class ChatChunk(msgspec.Struct):
    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | UnsetType | None = UNSET


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


def chat_body(
    id_: str, model: str, created: int, prompt_tokens: int, answer: Reply | ToolAnswer
) -> bytes:
    """A ``chat.completion`` object answering in text or with one tool call."""
    if isinstance(answer, ToolAnswer):
        call = ToolCall(
            id=new_id("call_"), function=FunctionCall(answer.name, answer.arguments_json)
        )
        message = AssistantMessage(role="assistant", content=None, tool_calls=[call])
        finish = "tool_calls"
    else:
        message = AssistantMessage(role="assistant", content=answer.text)
        finish = "length" if answer.truncated else "stop"
    completion = ChatCompletion(
        id=id_,
        object="chat.completion",
        created=created,
        model=model,
        choices=[Choice(index=0, message=message, logprobs=None, finish_reason=finish)],
        usage=_usage(prompt_tokens, answer.completion_tokens),
    )
    return _encoder.encode(completion)


def _sse(value: msgspec.Struct) -> bytes:
    return b"data: " + _encoder.encode(value) + b"\n\n"


def chat_chunks(
    id_: str,
    model: str,
    created: int,
    prompt_tokens: int,
    answer: Reply | ToolAnswer,
    include_usage: bool,
) -> list[bytes]:
    """The SSE events of a streamed chat completion, ``[DONE]`` included."""
    usage: Usage | UnsetType | None = None if include_usage else UNSET

    def chunk(delta: Delta, finish: str | None = None) -> bytes:
        choice = ChunkChoice(index=0, delta=delta, logprobs=None, finish_reason=finish)
        return _sse(
            ChatChunk(id_, "chat.completion.chunk", created, model, _FINGERPRINT, [choice], usage)
        )

    if isinstance(answer, ToolAnswer):
        opening = ToolCallDelta(
            index=0,
            id=new_id("call_"),
            type="function",
            function=FunctionDelta(name=answer.name, arguments=""),
        )
        events = [chunk(Delta(role="assistant", content=None, tool_calls=[opening], refusal=None))]
        for piece in answer.pieces:
            delta = ToolCallDelta(index=0, function=FunctionDelta(arguments=piece))
            events.append(chunk(Delta(tool_calls=[delta])))
        events.append(chunk(Delta(), "tool_calls"))
    else:
        events = [chunk(Delta(role="assistant", content="", refusal=None))]
        events.extend(chunk(Delta(content=piece)) for piece in answer.pieces)
        events.append(chunk(Delta(), "length" if answer.truncated else "stop"))
    if include_usage:
        total = _usage(prompt_tokens, answer.completion_tokens)
        events.append(
            _sse(ChatChunk(id_, "chat.completion.chunk", created, model, _FINGERPRINT, [], total))
        )
    events.append(DONE)
    return events


class TextChoice(msgspec.Struct):
    text: str
    index: int
    logprobs: None
    finish_reason: str | None


class TextCompletion(msgspec.Struct):
    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str
    choices: list[TextChoice]
    usage: Usage | UnsetType | None = UNSET


def completion_body(id_: str, model: str, created: int, prompt_tokens: int, reply: Reply) -> bytes:
    """A legacy ``text_completion`` object."""
    finish = "length" if reply.truncated else "stop"
    choice = TextChoice(text=reply.text, index=0, logprobs=None, finish_reason=finish)
    usage = _usage(prompt_tokens, reply.completion_tokens)
    return _encoder.encode(
        TextCompletion(id_, "text_completion", created, model, _FINGERPRINT, [choice], usage)
    )


def completion_chunks(
    id_: str, model: str, created: int, prompt_tokens: int, reply: Reply, include_usage: bool
) -> list[bytes]:
    """The SSE events of a streamed legacy completion, ``[DONE]`` included."""
    usage: Usage | UnsetType | None = None if include_usage else UNSET

    def chunk(text: str, finish: str | None) -> bytes:
        choice = TextChoice(text=text, index=0, logprobs=None, finish_reason=finish)
        return _sse(
            TextCompletion(id_, "text_completion", created, model, _FINGERPRINT, [choice], usage)
        )

    events = [chunk(piece, None) for piece in reply.pieces]
    events.append(chunk("", "length" if reply.truncated else "stop"))
    if include_usage:
        total = _usage(prompt_tokens, reply.completion_tokens)
        events.append(
            _sse(TextCompletion(id_, "text_completion", created, model, _FINGERPRINT, [], total))
        )
    events.append(DONE)
    return events


def embeddings_body(model: str, request: EmbeddingRequest, dimensions: int) -> bytes:
    """An embeddings list: one deterministic unit vector per input."""
    raw = request.input
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        inputs: list[Any] = [raw]
    else:
        inputs = list(raw) if isinstance(raw, list) else [raw]
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode_embedding(
                embedding_vector(item if isinstance(item, str) else repr(item), dimensions),
                request.encoding_format,
            ),
        }
        for index, item in enumerate(inputs)
    ]
    tokens = prompt_tokens_of(raw)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _encoder.encode({"object": "list", "data": data, "model": model, "usage": usage})


def models_body(models: tuple[str, ...]) -> bytes:
    """The ``GET /v1/models`` list."""
    data = [
        {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"} for m in models
    ]
    return _encoder.encode({"object": "list", "data": data})
