"""Content parts a user sends (text, images, PDF documents), part by part, in either dialect.

    OpenAI part                                       Anthropic block
    {"type":"text","text"}                       <->  {"type":"text","text"}
    {"type":"image_url","image_url":{"url":U}}   <->  {"type":"image","source":{"type":"url","url":U}}
    {"type":"image_url",... "data:M;base64,D"}   <->  {"type":"image","source":{"type":"base64",
                                                        "media_type":M,"data":D}}
    {"type":"file","file":{"file_data":          <->  {"type":"document","source":{"type":"base64",
      "data:M;base64,D","filename":F}}                  "media_type":M,"data":D},"title":F}
    (text part)                                   <-  {"type":"document","source":{"type":"text",..}}

Dropped on the way: OpenAI ``image_url.detail``; Anthropic ``cache_control``, ``citations`` and
``context``. Anything else (audio, uploaded-file ids, URL documents) has no counterpart and is a
400, because silently dropping part of what a user sent would change the question.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest

__all__ = ["anthropic_block", "data_url", "openai_part", "parse_data_url", "texts"]


def parse_data_url(url: str, param: str) -> tuple[str, str]:
    """``data:image/png;base64,AAAA`` -> ``("image/png", "AAAA")``; only base64 data URLs."""
    header, comma, data = url.removeprefix("data:").partition(",")
    attributes = header.split(";")
    if not comma or "base64" not in attributes[1:] or not attributes[0]:
        raise BadRequest("a data URL must look like data:<media type>;base64,<data>", param=param)
    return attributes[0], data


def data_url(media_type: str, data: str) -> str:
    """The data URL OpenAI expects for inline base64 content."""
    return f"data:{media_type};base64,{data}"


def texts(content: Any, param: str) -> list[str]:
    """The texts of a content that may only hold text: a string or a list of text parts/blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise BadRequest("content must be a string or a list of text parts", param=param)
    result = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise BadRequest("only text parts are allowed here", param=f"{param}[{i}]")
        text = part.get("text")
        if not isinstance(text, str):
            raise BadRequest("a text part needs a string `text`", param=f"{param}[{i}].text")
        result.append(text)
    return result


def anthropic_block(part: Any, param: str) -> dict[str, Any]:
    """The Anthropic content block for one OpenAI user content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": texts([part], param)[0]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise BadRequest("an image_url part needs a url", param=f"{param}.image_url.url")
        if url.startswith("data:"):
            media_type, data = parse_data_url(url, f"{param}.image_url.url")
            source = {"type": "base64", "media_type": media_type, "data": data}
        else:
            source = {"type": "url", "url": url}
        return {"type": "image", "source": source}
    if kind == "file":
        file = part.get("file")
        file_data = file.get("file_data") if isinstance(file, dict) else None
        if not isinstance(file_data, str):
            raise BadRequest(
                "only inline files (file.file_data) can be sent to this model", param=param
            )
        media_type, data = parse_data_url(
            file_data if file_data.startswith("data:") else "", f"{param}.file.file_data"
        )
        block: dict[str, Any] = {
            "type": "document",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
        filename = file.get("filename") if isinstance(file, dict) else None
        if isinstance(filename, str) and filename:
            block["title"] = filename
        return block
    raise BadRequest(f"content part type {kind!r} is not supported by this model", param=param)


def openai_part(block: Any, param: str) -> dict[str, Any]:
    """The OpenAI user content part for one Anthropic content block."""
    kind = block.get("type") if isinstance(block, dict) else None
    source = block.get("source") if isinstance(block, dict) else None
    source_kind = source.get("type") if isinstance(source, dict) else None
    if kind == "text":
        return {"type": "text", "text": texts([block], param)[0]}
    if kind == "image" and isinstance(source, dict):
        if source_kind == "url" and isinstance(source.get("url"), str):
            return {"type": "image_url", "image_url": {"url": source["url"]}}
        if source_kind == "base64":
            return {"type": "image_url", "image_url": {"url": _inline(source, param)}}
    if kind == "document" and isinstance(source, dict):
        if source_kind == "base64":
            file: dict[str, Any] = {"file_data": _inline(source, param)}
            title = block.get("title")
            if isinstance(title, str) and title:
                file["filename"] = title
            return {"type": "file", "file": file}
        if source_kind == "text" and isinstance(source.get("data"), str):
            return {"type": "text", "text": source["data"]}
    detail = f"{kind}/{source_kind}" if source_kind else repr(kind)
    raise BadRequest(f"content block {detail} is not supported by this model", param=param)


def _inline(source: dict[str, Any], param: str) -> str:
    media_type, data = source.get("media_type"), source.get("data")
    if not isinstance(media_type, str) or not isinstance(data, str):
        raise BadRequest("a base64 source needs media_type and data", param=f"{param}.source")
    return data_url(media_type, data)
