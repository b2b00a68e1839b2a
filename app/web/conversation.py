"""Turn a stored exchange into chat messages for the detail page.

Request bodies come in the OpenAI chat, completions and Responses shapes and
in Ollama's chat and generate shapes. The reply comes from the columns that
the capture step assembled (response_text, reasoning_text, tool_calls).
Images are shown as placeholders and never loaded, whether or not the stored
body kept them.
"""

import json
from dataclasses import dataclass, field
from typing import Any

# Placeholders show this much of an image reference, enough for its media type
# and the size note that the capture step leaves in place of the data.
IMAGE_PREVIEW_CHARS = 80


@dataclass(slots=True)
class Part:
    """One piece of a message: text, reasoning, an image, a tool call or its result."""

    kind: str
    text: str = ""
    name: str = ""


@dataclass(slots=True)
class Message:
    role: str
    parts: list[Part] = field(default_factory=list)


def conversation(exchange: dict[str, Any]) -> list[Message]:
    """Return the request's messages followed by the assistant's reply."""
    body = exchange.get("request_body")
    messages = request_messages(body) if isinstance(body, dict) else []
    reply = reply_message(exchange)
    if reply.parts:
        messages.append(reply)
    return messages


def request_messages(body: dict[str, Any]) -> list[Message]:
    """Return the messages that a request body sends, in order."""
    messages: list[Message] = []
    for key in ("system", "instructions"):
        if isinstance(body.get(key), str):
            messages.append(Message("system", [Part("text", body[key])]))

    if isinstance(body.get("messages"), list):
        messages.extend(
            _message(item) for item in body["messages"] if isinstance(item, dict)
        )
    elif isinstance(body.get("input"), list):
        messages.extend(_responses_item(item) for item in body["input"])
    elif "prompt" in body or "input" in body:
        prompt = body.get("prompt", body.get("input"))
        messages.append(Message("user", _content_parts(prompt)))

    if isinstance(body.get("images"), list):
        images = [Part("image", _image_label(image)) for image in body["images"]]
        if messages:
            messages[-1].parts.extend(images)
    return messages


def reply_message(exchange: dict[str, Any]) -> Message:
    """Return the assistant's reply as the capture step assembled it."""
    reply = Message("assistant")
    if exchange.get("reasoning_text"):
        reply.parts.append(Part("reasoning", exchange["reasoning_text"]))
    if exchange.get("response_text"):
        reply.parts.append(Part("text", exchange["response_text"]))
    for call in exchange.get("tool_calls") or []:
        if isinstance(call, dict):
            reply.parts.append(
                Part(
                    "tool_call",
                    _arguments(call.get("arguments")),
                    str(call.get("name") or ""),
                )
            )
    return reply


def _message(item: dict[str, Any]) -> Message:
    role = str(item.get("role") or "unknown")
    message = Message(role)
    reasoning = (
        item.get("reasoning_content") or item.get("thinking") or item.get("reasoning")
    )
    if reasoning:
        message.parts.append(Part("reasoning", _text(reasoning)))

    if role == "tool":
        name = str(item.get("name") or item.get("tool_call_id") or "")
        message.parts.append(Part("tool_result", _text(item.get("content")), name))
    else:
        message.parts.extend(_content_parts(item.get("content")))

    for call in item.get("tool_calls") or []:
        message.parts.append(_tool_call(call))
    for image in item.get("images") or []:
        message.parts.append(Part("image", _image_label(image)))
    return message


def _responses_item(item: Any) -> Message:
    if not isinstance(item, dict):
        return Message("user", _content_parts(item))
    kind = item.get("type")
    if kind == "function_call":
        name = str(item.get("name") or "")
        arguments = _arguments(item.get("arguments"))
        return Message("assistant", [Part("tool_call", arguments, name)])
    if kind == "function_call_output":
        name = str(item.get("call_id") or "")
        return Message("tool", [Part("tool_result", _text(item.get("output")), name)])
    return _message(item)


def _content_parts(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Part("text", content)]
    if not isinstance(content, list):
        return [Part("text", _text(content))]

    parts = []
    for piece in content:
        if isinstance(piece, str):
            parts.append(Part("text", piece))
        elif isinstance(piece, dict) and "image" in str(piece.get("type", "")):
            parts.append(Part("image", _image_label(piece)))
        elif isinstance(piece, dict) and isinstance(piece.get("text"), str):
            parts.append(Part("text", piece["text"]))
        else:
            parts.append(Part("text", _text(piece)))
    return parts


def _tool_call(call: Any) -> Part:
    if not isinstance(call, dict):
        return Part("tool_call", _text(call))
    function = call.get("function")
    if not isinstance(function, dict):
        function = call
    name = str(function.get("name") or "")
    return Part("tool_call", _arguments(function.get("arguments")), name)


def _image_label(image: Any) -> str:
    reference = image
    if isinstance(image, dict):
        url = image.get("image_url", image.get("url", image.get("source", "")))
        reference = url.get("url", "") if isinstance(url, dict) else url
    reference = str(reference)
    if len(reference) > IMAGE_PREVIEW_CHARS:
        return reference[:IMAGE_PREVIEW_CHARS] + "…"
    return reference


def _arguments(value: Any) -> str:
    """Return tool-call arguments indented, parsing the JSON string OpenAI sends."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return _text(value)


def _text(value: Any) -> str:
    """Return a string as it is and anything else as indented JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
