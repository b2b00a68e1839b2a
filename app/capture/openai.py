"""Assembly of OpenAI-compatible responses: chat, completions, responses, embeddings.

Each `apply_*` function takes one decoded JSON object (a stream chunk or a
whole non-stream body), updates the Assembly, and returns the timeline kind.
"""

import base64
import binascii

from app.capture.assembly import (
    OUTPUT_KINDS,
    Assembly,
    Choice,
    content_text,
    normalize_usage,
)

# When one chunk carries several things, the timeline shows the first kind listed.
_KIND_ORDER = ("tool_call", "content", "reasoning", "usage", "role")


def apply_chat(assembly: Assembly, obj: dict, event_name: str | None = None) -> str:
    """Apply a chat or text completion: a stream chunk or a whole response."""
    kinds: set[str] = set()
    _note_model(assembly, obj)

    if assembly.set_usage(normalize_usage(obj.get("usage"))):
        kinds.add("usage")

    choices = obj.get("choices")
    if isinstance(choices, list):
        for item in choices:
            if isinstance(item, dict):
                kinds |= _apply_choice(assembly.choice(item.get("index")), item)
    return pick_kind(kinds)


def pick_kind(kinds: set[str]) -> str:
    """Return the timeline kind of an event that carried the given kinds."""
    for kind in _KIND_ORDER:
        if kind in kinds:
            return kind
    return "other"


def _apply_choice(choice: Choice, item: dict) -> set[str]:
    kinds: set[str] = set()
    finish_reason = item.get("finish_reason")
    if isinstance(finish_reason, str) and finish_reason:
        choice.finish_reason = finish_reason

    # /v1/completions puts the text on the choice itself.
    text = item.get("text")
    if isinstance(text, str) and text:
        choice.text.append(text)
        kinds.add("content")

    delta = item.get("delta")
    if isinstance(delta, dict):
        kinds |= _apply_message(choice, delta, is_delta=True)
    message = item.get("message")
    if isinstance(message, dict):
        kinds |= _apply_message(choice, message, is_delta=False)
    return kinds


def _apply_message(choice: Choice, message: dict, is_delta: bool) -> set[str]:
    kinds: set[str] = set()
    content = content_text(message.get("content"))
    if content:
        choice.text.append(content)
        kinds.add("content")

    # vLLM and DeepSeek send reasoning_content, Ollama and newer vLLM send
    # reasoning; some servers send both with the same text, so take one.
    reasoning = message.get("reasoning_content")
    if not isinstance(reasoning, str) or not reasoning:
        reasoning = message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        choice.reasoning.append(reasoning)
        kinds.add("reasoning")

    if _apply_tool_calls(choice, message, is_delta):
        kinds.add("tool_call")
    if not kinds and isinstance(message.get("role"), str):
        kinds.add("role")
    return kinds


def _apply_tool_calls(choice: Choice, message: dict, is_delta: bool) -> bool:
    seen = False
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        seen = True
        if is_delta:
            choice.tool_calls.add_delta(call)
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        choice.tool_calls.add_complete(
            _string(call.get("id")),
            _string(function.get("name")),
            function.get("arguments"),
        )

    # The legacy function_call field carries a single call without an id.
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        seen = True
        choice.tool_calls.add_delta({"index": "function_call", "function": legacy})
    return seen


def apply_responses(
    assembly: Assembly, obj: dict, event_name: str | None = None
) -> str:
    """Apply a Responses API stream event or a whole response object."""
    event_type = obj.get("type")
    if not isinstance(event_type, str):
        event_type = event_name or ""

    if not event_type.startswith("response."):
        if obj.get("object") == "response":
            return _apply_response_object(assembly, obj, with_output=True)
        return "other"

    return _apply_response_event(assembly, obj, event_type)


def _apply_response_event(assembly: Assembly, obj: dict, event_type: str) -> str:
    choice = assembly.choice(0)
    delta = obj.get("delta")

    if event_type == "response.output_text.delta" and isinstance(delta, str):
        choice.text.append(delta)
        return "content" if delta else "other"
    if event_type in _REASONING_DELTAS and isinstance(delta, str):
        choice.reasoning.append(delta)
        return "reasoning" if delta else "other"
    if event_type == "response.output_item.added":
        return _start_function_call(choice, obj)
    if event_type == "response.function_call_arguments.delta":
        choice.tool_calls.append_arguments(_item_key(obj), delta)
        return "tool_call"
    if event_type in _TERMINAL_EVENTS:
        return _finish_response(assembly, choice, obj.get("response"))
    if event_type in ("response.created", "response.in_progress"):
        response = obj.get("response")
        if isinstance(response, dict):
            _note_model(assembly, response)
    return "other"


def _finish_response(assembly: Assembly, choice: Choice, response: object) -> str:
    assembly.done = True
    if not isinstance(response, dict):
        return "done"

    # Output already carried by deltas must not be added twice. A stream with
    # no deltas takes its output from the final response, which then counts
    # as the first output for time to first token.
    has_output = bool(choice.text or choice.reasoning or choice.tool_calls.result())
    kind = _apply_response_object(assembly, response, with_output=not has_output)
    return kind if kind in OUTPUT_KINDS else "done"


_REASONING_DELTAS = frozenset(
    {
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning.delta",
    }
)
_TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)


def _start_function_call(choice: Choice, obj: dict) -> str:
    item = obj.get("item")
    if not isinstance(item, dict) or item.get("type") != "function_call":
        return "other"

    call_id = _string(item.get("call_id")) or _string(item.get("id"))
    choice.tool_calls.add_fragment(_item_key(obj), call_id, _string(item.get("name")))
    if item.get("arguments"):
        choice.tool_calls.append_arguments(_item_key(obj), item["arguments"])
    return "tool_call"


def _item_key(obj: dict) -> object:
    # Both the item.added and the arguments events carry output_index.
    index = obj.get("output_index")
    if isinstance(index, int):
        return ("output", index)
    item = obj.get("item")
    item_id = item.get("id") if isinstance(item, dict) else obj.get("item_id")
    return ("item", item_id if isinstance(item_id, str) else None)


def _apply_response_object(
    assembly: Assembly, response: dict, with_output: bool
) -> str:
    kinds: set[str] = set()
    _note_model(assembly, response)
    if assembly.set_usage(normalize_usage(response.get("usage"))):
        kinds.add("usage")

    choice = assembly.choice(0)
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    status = response.get("status")
    if isinstance(reason, str) and reason:
        choice.finish_reason = reason
    elif isinstance(status, str) and status:
        choice.finish_reason = status

    output = response.get("output")
    if with_output and isinstance(output, list):
        for item in output:
            if isinstance(item, dict):
                kinds |= _apply_output_item(choice, item)
    return pick_kind(kinds)


def _apply_output_item(choice: Choice, item: dict) -> set[str]:
    item_type = item.get("type")
    if item_type == "message":
        text = content_text(item.get("content"))
        if text:
            choice.text.append(text)
            return {"content"}
    elif item_type == "reasoning":
        parts = [content_text(item.get(key)) for key in ("summary", "content")]
        text = "".join(part for part in parts if part)
        if text:
            choice.reasoning.append(text)
            return {"reasoning"}
    elif item_type == "function_call":
        call_id = _string(item.get("call_id")) or _string(item.get("id"))
        choice.tool_calls.add_complete(
            call_id, _string(item.get("name")), item.get("arguments")
        )
        return {"tool_call"}
    return set()


def apply_usage_only(
    assembly: Assembly, obj: dict, event_name: str | None = None
) -> str:
    """Apply a response that carries no generated text, such as embeddings."""
    _note_model(assembly, obj)
    if assembly.set_usage(normalize_usage(obj.get("usage"))):
        return "usage"
    return "other"


def summarize_vectors(vectors: object) -> dict:
    """Return {"count", "dims", "encoding"} for a list of embedding vectors.

    A vector is a list of floats, or a base64 string of little-endian float32
    values (OpenAI's encoding_format "base64"). dims is that of the first vector.
    """
    items = vectors if isinstance(vectors, list) else []
    first = items[0] if items else None

    if isinstance(first, str):
        return {"count": len(items), "dims": _base64_dims(first), "encoding": "base64"}
    if isinstance(first, list):
        return {"count": len(items), "dims": len(first), "encoding": "float"}
    return {"count": len(items), "dims": None, "encoding": None}


def summarize_openai_embeddings(body: dict) -> tuple[dict, dict]:
    """Return the body with its vectors replaced by a summary, and the summary."""
    data = body.get("data")
    vectors = (
        [item.get("embedding") for item in data if isinstance(item, dict)]
        if (isinstance(data, list))
        else []
    )
    summary = summarize_vectors(vectors)
    return {**body, "data": summary}, summary


def _base64_dims(text: str) -> int | None:
    try:
        return len(base64.b64decode(text, validate=True)) // 4
    except (binascii.Error, ValueError):
        return None


def _note_model(assembly: Assembly, obj: dict) -> None:
    model = obj.get("model")
    if assembly.response_model is None and isinstance(model, str) and model:
        assembly.response_model = model


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
