"""The request fields the other dialect cannot honour: refused with a 400, never dropped unseen.

A translation drops a field only when the answer keeps its form without it: sampling, cache and
billing hints and labels, listed in each request module's docstring. A field whose absence the
client would find in the answer (data it expects, a capability, a format) has a counterpart or
is refused with a 400 ``unsupported_parameter`` naming it::

    OpenAI -> Anthropic                      Anthropic -> OpenAI
    logprobs: true, top_logprobs             container (code execution's sandbox)
    logit_bias (ids of OpenAI's tokenizers)  mcp_servers (remote tools the model would call)
    audio, modalities other than text
    web_search_options (a search tool)
    moderation (scores, or blocking)

A field at its default (``logprobs: false``, ``logit_bias: {}``, ``modalities: ["text"]``,
``mcp_servers: []``) asks for nothing and is dropped. Structured output has its own module.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest

__all__ = ["refuse_anthropic_only_fields", "refuse_openai_only_fields", "unsupported"]


def unsupported(param: str, message: str) -> BadRequest:
    """The 400 for a request field the upstream's dialect cannot honour."""
    return BadRequest(message, param=param, code="unsupported_parameter")


def refuse_openai_only_fields(body: dict[str, Any]) -> None:
    """Raise for the first field of OpenAI chat request ``body`` that Anthropic cannot honour."""
    if body.get("logprobs"):
        raise unsupported("logprobs", "logprobs are not available from this model")
    if body.get("top_logprobs"):
        raise unsupported("top_logprobs", "logprobs are not available from this model")
    if body.get("logit_bias"):
        raise unsupported("logit_bias", "logit_bias is not supported by this model")
    if body.get("audio") is not None:
        raise unsupported("audio", "audio output is not supported by this model")
    modalities = body.get("modalities")
    if modalities and modalities != ["text"]:
        raise unsupported("modalities", "this model answers in text only")
    if body.get("web_search_options") is not None:
        raise unsupported("web_search_options", "web search is not supported by this model")
    if body.get("moderation") is not None:
        raise unsupported("moderation", "moderation is not supported by this model")


def refuse_anthropic_only_fields(body: dict[str, Any]) -> None:
    """Raise for the first field of Anthropic request ``body`` that OpenAI cannot honour."""
    if body.get("container") is not None:
        raise unsupported("container", "containers are not supported by this model")
    if body.get("mcp_servers"):
        raise unsupported("mcp_servers", "MCP servers are not supported by this model")
