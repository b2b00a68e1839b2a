"""Builders of captured exchanges for the parser tests."""

import json

from app.capture import Captured

SSE_HEADERS = [("content-type", "text/event-stream")]
NDJSON_HEADERS = [("content-type", "application/x-ndjson")]
JSON_HEADERS = [("content-type", "application/json")]


def exchange(
    path: str,
    request: dict | bytes | None,
    parts: list[bytes],
    status: int | None = 200,
    headers: list[tuple[str, str]] | None = None,
    method: str = "POST",
    step_ms: float = 10.0,
    truncated: bool = False,
) -> Captured:
    """Return a Captured whose chunks are `parts`, `step_ms` apart from t=step_ms."""
    if isinstance(request, dict):
        body = json.dumps(request).encode()
    else:
        body = request or b""
    chunks = [(step_ms * (i + 1), part) for i, part in enumerate(parts)]
    return Captured(
        method=method,
        path=path,
        request_body=body,
        status=status,
        response_headers=headers if headers is not None else JSON_HEADERS,
        chunks=chunks,
        truncated=truncated,
    )


def chat_chunk(
    delta: dict,
    finish: str | None = None,
    index: int = 0,
    usage: object = "absent",
    completion_id: str = "t",
) -> bytes:
    """Return one `data:` event of an OpenAI chat completion stream."""
    payload: dict = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "mock-1",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    if usage != "absent":
        payload["usage"] = usage
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def event(payload: dict, name: str | None = None) -> bytes:
    """Return one SSE event with a JSON payload and an optional event name."""
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


def ndjson_line(payload: dict) -> bytes:
    return json.dumps(payload).encode() + b"\n"


def one_byte_chunks(parts: list[bytes]) -> list[bytes]:
    """Return the concatenated parts as one chunk per byte."""
    data = b"".join(parts)
    return [data[i : i + 1] for i in range(len(data))]


DONE = b"data: [DONE]\n\n"
