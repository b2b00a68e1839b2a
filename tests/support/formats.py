"""Builders for the exact bytes an Ollama server writes, for scripted upstreams.

The OpenAI-compatible shapes follow Ollama's flavour of the API: compact JSON,
`system_fingerprint: "fp_ollama"`, a separate finish chunk with an empty delta,
an optional usage-only chunk with `choices: []`, then `data: [DONE]`. The
native shapes are one JSON object per line, with the metrics on the final
`done: true` line and every duration in nanoseconds.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

CREATED = 1_700_000_000
CREATED_AT = "2025-01-01T00:00:00Z"
FINGERPRINT = "fp_ollama"
DONE_EVENT = b"data: [DONE]\n\n"
OLLAMA_VERSION = "0.33.0"


def to_json(value: Any) -> bytes:
    """Encode `value` as UTF-8 JSON with no spaces and non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def sse_event(payload: dict[str, Any] | str, event: str | None = None) -> bytes:
    """Build one SSE event, `data: <json>` plus a blank line.

    A string payload is written as is, so `[DONE]` and malformed data work.
    """
    data = payload if isinstance(payload, str) else to_json(payload).decode()
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


def usage_block(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """Build an OpenAI `usage` object whose total is the sum of both counts."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    content: str | None,
    *,
    model: str = "mock-1",
    completion_id: str = "chatcmpl-1",
    finish_reason: str = "stop",
    usage: dict[str, int] | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> bytes:
    """Build a non-stream `chat.completion` body."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning"] = reasoning
    if tool_calls is not None:
        message["tool_calls"] = tool_calls

    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
    }
    if usage is not None:
        body["usage"] = usage
    return to_json(body)


def chat_chunk(
    delta: dict[str, Any],
    *,
    model: str = "mock-1",
    completion_id: str = "chatcmpl-1",
    finish_reason: str | None = None,
) -> bytes:
    """Build one `chat.completion.chunk` SSE event with a single choice."""
    return sse_event(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def usage_chunk(
    prompt_tokens: int,
    completion_tokens: int,
    *,
    model: str = "mock-1",
    completion_id: str = "chatcmpl-1",
) -> bytes:
    """Build the usage-only chunk (`choices: []`) sent when include_usage is on."""
    return sse_event(
        {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [],
            "usage": usage_block(prompt_tokens, completion_tokens),
        }
    )


def chat_stream(
    pieces: list[str],
    *,
    model: str = "mock-1",
    completion_id: str = "chatcmpl-1",
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = None,
) -> list[bytes]:
    """Build the events of a whole chat stream, one element per event.

    The first delta carries the role, a finish chunk with an empty delta
    follows the content, then the usage chunk when `usage` is given, then
    `[DONE]`.
    """
    ids = {"model": model, "completion_id": completion_id}
    events = []
    for number, piece in enumerate(pieces):
        delta = {"content": piece}
        if number == 0:
            delta = {"role": "assistant", "content": piece}
        events.append(chat_chunk(delta, **ids))

    events.append(chat_chunk({}, finish_reason=finish_reason, **ids))
    if usage is not None:
        events.append(usage_chunk(usage[0], usage[1], **ids))
    events.append(DONE_EVENT)
    return events


def text_completion(
    text: str,
    *,
    model: str = "mock-1",
    completion_id: str = "cmpl-1",
    usage: dict[str, int] | None = None,
) -> bytes:
    """Build a non-stream `/v1/completions` body."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"text": text, "index": 0, "finish_reason": "stop"}],
    }
    if usage is not None:
        body["usage"] = usage
    return to_json(body)


def openai_error(message: str, error_type: str, code: str | int | None) -> bytes:
    """Build an OpenAI-shaped error body."""
    return to_json(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    )


def model_list(model_ids: list[str]) -> bytes:
    """Build a `GET /v1/models` body, owned by the `library` namespace."""
    models = [
        {"id": model_id, "object": "model", "created": CREATED, "owned_by": "library"}
        for model_id in model_ids
    ]
    return to_json({"object": "list", "data": models})


def base64_floats(values: list[float]) -> str:
    """Encode float32 values little-endian in base64, as `encoding_format=base64`."""
    packed = struct.pack(f"<{len(values)}f", *values)
    return base64.b64encode(packed).decode()


def embeddings(
    vectors: list[list[float]],
    *,
    model: str = "nomic-embed-text",
    prompt_tokens: int = 1,
    encoding: str = "float",
) -> bytes:
    """Build a `/v1/embeddings` body; `encoding="base64"` packs each vector."""
    data = []
    for index, vector in enumerate(vectors):
        value: list[float] | str = vector
        if encoding == "base64":
            value = base64_floats(vector)
        data.append({"object": "embedding", "index": index, "embedding": value})

    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return to_json({"object": "list", "data": data, "model": model, "usage": usage})


def ndjson_line(value: dict[str, Any]) -> bytes:
    """Encode one NDJSON line, terminated by a newline."""
    return to_json(value) + b"\n"


def ollama_metrics(
    prompt_eval_count: int,
    eval_count: int,
    *,
    eval_duration_ns: int = 40_000_000,
) -> dict[str, int]:
    """Build the metric fields of a final Ollama line, durations in nanoseconds."""
    prompt_eval_duration_ns = 130_000_000
    load_duration_ns = 15_000_000
    total = load_duration_ns + prompt_eval_duration_ns + eval_duration_ns
    return {
        "total_duration": total,
        "load_duration": load_duration_ns,
        "prompt_eval_count": prompt_eval_count,
        "prompt_eval_duration": prompt_eval_duration_ns,
        "eval_count": eval_count,
        "eval_duration": eval_duration_ns,
    }


def ollama_chat_line(
    content: str,
    *,
    model: str = "llama3.2",
    thinking: str | None = None,
    created_at: str = CREATED_AT,
) -> bytes:
    """Build one `done: false` line of an `/api/chat` stream."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    return ndjson_line(
        {"model": model, "created_at": created_at, "message": message, "done": False}
    )


def ollama_chat_done(
    prompt_eval_count: int,
    eval_count: int,
    *,
    model: str = "llama3.2",
    done_reason: str = "stop",
    content: str = "",
    thinking: str | None = None,
    created_at: str = CREATED_AT,
) -> bytes:
    """Build the final `done: true` `/api/chat` line, or a whole non-stream body.

    A stream's final line has empty content, while a `stream: false` response
    puts the whole text (and thinking) here.
    """
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    line = {
        "model": model,
        "created_at": created_at,
        "message": message,
        "done": True,
        "done_reason": done_reason,
    }
    return ndjson_line(line | ollama_metrics(prompt_eval_count, eval_count))


def ollama_generate_line(
    response: str, *, model: str = "llama3.2", created_at: str = CREATED_AT
) -> bytes:
    """Build one `done: false` line of an `/api/generate` stream."""
    return ndjson_line(
        {"model": model, "created_at": created_at, "response": response, "done": False}
    )


def ollama_generate_done(
    prompt_eval_count: int,
    eval_count: int,
    *,
    model: str = "llama3.2",
    done_reason: str = "stop",
    response: str = "",
    created_at: str = CREATED_AT,
) -> bytes:
    """Build the final `done: true` `/api/generate` line with its metrics."""
    line = {
        "model": model,
        "created_at": created_at,
        "response": response,
        "done": True,
        "done_reason": done_reason,
    }
    return ndjson_line(line | ollama_metrics(prompt_eval_count, eval_count))


def ollama_tags(model_names: list[str], size: int = 2_019_393_189) -> bytes:
    """Build a `GET /api/tags` body listing `model_names`."""
    models = [{"name": name, "model": name, "size": size} for name in model_names]
    return to_json({"models": models})


def ollama_version(version: str = OLLAMA_VERSION) -> bytes:
    """Build a `GET /api/version` body."""
    return to_json({"version": version})


def ollama_embed(
    vectors: list[list[float]], *, model: str = "nomic-embed-text", tokens: int = 1
) -> bytes:
    """Build a native `/api/embed` body."""
    return to_json(
        {
            "model": model,
            "embeddings": vectors,
            "total_duration": 14_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": tokens,
        }
    )
