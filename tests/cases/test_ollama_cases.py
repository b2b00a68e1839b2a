"""Ollama's native API, embeddings and model lists through the running appliance."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import formats
from tests.support.upstream import Script, Step, end, send, sleep

from .helpers import (
    JSON,
    NDJSON,
    Stage,
    body_of,
    end_to_end_headers,
    fetch,
    header_names,
    sha256,
    stored,
)

CHAT_LINES = [
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.000Z","message":'
    b'{"role":"assistant","content":"Hel"},"done":false}\n',
    # The second line is split in the middle of its JSON.
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.040Z","message":'
    b'{"role":"assis',
    b'tant","content":"lo"},"done":false}\n',
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.090Z","message":'
    b'{"role":"assistant","content":""},"done":true,"done_reason":"stop",'
    b'"total_duration":912000000,"load_duration":15000000,"prompt_eval_count":26,'
    b'"prompt_eval_duration":130000000,"eval_count":2,"eval_duration":40000000}\n',
]
GENERATE_LINES = [
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.000Z","response":"Hel",'
    b'"done":false}\n',
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.040Z","resp',
    b'onse":"lo","done":false}\n',
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.090Z","response":"",'
    b'"done":true,"done_reason":"stop","total_duration":912000000,'
    b'"load_duration":15000000,"prompt_eval_count":26,'
    b'"prompt_eval_duration":130000000,"eval_count":2,"eval_duration":40000000}\n',
]
NATIVE_VARIANTS = [
    (
        "/api/chat",
        b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}',
        CHAT_LINES,
    ),
    ("/api/generate", b'{"model":"llama3.2","prompt":"hi"}', GENERATE_LINES),
]


def ndjson_steps(lines: list[bytes]) -> list[Step]:
    steps = [send(lines[0]), sleep(40), send(lines[1]), sleep(40)]
    return steps + [send(line) for line in lines[2:]] + [end()]


def post(
    appliance: Any,
    client: httpx.Client,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> Any:
    headers = {**headers, "Content-Type": "application/json"}
    return fetch(
        client, "POST", appliance.proxy_url + path, headers=headers, content=body
    )


@pytest.mark.parametrize(
    ("path", "request_body", "lines"), NATIVE_VARIANTS, ids=["chat", "generate"]
)
def test_ndjson_stream_passes_line_by_line(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    path: str,
    request_body: bytes,
    lines: list[bytes],
) -> None:
    """Ollama's NDJSON streams by default and is neither buffered nor converted.

    https://github.com/decolua/9router/issues/2386
    """
    steps = ndjson_steps(lines)
    headers = stage.play("POST", path, Script(headers=NDJSON, steps=steps))
    reply = post(appliance, client, path, headers, request_body)
    row = stored(appliance, reply)
    first_line_at = reply.arrivals[0][0]
    last_at = reply.arrivals[-1][0]

    assert reply.sha256 == sha256(body_of(steps))
    assert reply.headers["content-type"] == "application/x-ndjson"
    assert reply.arrivals[0][1] == lines[0]
    assert last_at - first_line_at >= 0.06
    assert row["is_stream"] is True
    assert row["model"] == "llama3.2"
    assert row["response_text"] == "Hello"
    assert row["prompt_tokens"] == 26
    assert row["completion_tokens"] == 2
    assert row["usage_source"] == "reported"
    assert row["finish_reason"] == "stop"
    assert row["ttft_ms"] is not None
    assert row["ttft_ms"] < 60


THINKING_LINES = [
    formats.ollama_chat_line("", model="qwen3", thinking="Let me spell it"),
    formats.ollama_chat_line("", model="qwen3", thinking=": s-t-r-a-w-b-e-r-r-y."),
    formats.ollama_chat_line("There are 3.", model="qwen3"),
    formats.ollama_chat_done(18, 21, model="qwen3"),
]
THINK_REQUEST = (
    b'{"model":"qwen3","think":true,"stream":true,'
    b'"messages":[{"role":"user","content":"How many r in strawberry?"}]}'
)
REASONING = "Let me spell it: s-t-r-a-w-b-e-r-r-y."


def test_thinking_stream_kept_apart(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """`message.thinking` is reasoning, and its first line is the first token.

    https://github.com/langgenius/dify-official-plugins/pull/2117
    """
    steps: list[Step] = []
    for line in THINKING_LINES:
        steps += [send(line), sleep(100)]
    steps.append(end())
    headers = stage.play("POST", "/api/chat", Script(headers=NDJSON, steps=steps))
    reply = post(appliance, client, "/api/chat", headers, THINK_REQUEST)
    row = stored(appliance, reply)

    assert reply.sha256 == sha256(body_of(steps))
    assert row["response_text"] == "There are 3."
    assert row["reasoning_text"] == REASONING
    assert row["prompt_tokens"] == 18
    assert row["completion_tokens"] == 21
    assert row["ttft_ms"] is not None
    assert row["ttft_ms"] < 90


def test_thinking_without_stream_stored(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A `stream: false` response with thinking is not stored as empty."""
    body = formats.ollama_chat_done(
        18, 21, model="qwen3", content="There are 3.", thinking=REASONING
    ).rstrip(b"\n")
    script = Script(headers=JSON, steps=[send(body)], chunked=False)
    headers = stage.play("POST", "/api/chat", script)
    request_body = THINK_REQUEST.replace(b'"stream":true', b'"stream":false')
    reply = post(appliance, client, "/api/chat", headers, request_body)
    row = stored(appliance, reply)

    assert reply.body == body
    assert row["is_stream"] is False
    assert row["response_text"] == "There are 3."
    assert row["reasoning_text"] == REASONING
    assert row["prompt_tokens"] == 18
    assert row["completion_tokens"] == 21


BASE64_EMBEDDINGS = (
    b'{"object":"list","data":[{"object":"embedding","index":0,"embedding":'
    b'"AAAAPwAAgL4AAIA/AAAAPg=="},{"object":"embedding","index":1,"embedding":'
    b'"AAAAAAAAAEAAAIC/AABAPw=="},{"object":"embedding","index":2,"embedding":'
    b'"AAAAPwAAgL4AAIA/AAAAPg=="}],"model":"nomic-embed-text","usage":'
    b'{"prompt_tokens":7,"total_tokens":7}}'
)
VECTORS = [[0.5, -0.25, 1.0, 0.125], [0.0, 2.0, -1.0, 0.75], [0.5, -0.25, 1.0, 0.125]]
EMBEDDING_VARIANTS = [
    (
        b'{"model":"nomic-embed-text","input":["first text","second text","third"],'
        b'"encoding_format":"base64"}',
        BASE64_EMBEDDINGS,
        {"count": 3, "dims": 4, "encoding": "base64"},
        3,
    ),
    (
        b'{"model":"nomic-embed-text","input":["first text","second text","third"],'
        b'"encoding_format":"base64"}',
        formats.embeddings(VECTORS, prompt_tokens=7),
        {"count": 3, "dims": 4, "encoding": "float"},
        3,
    ),
    (
        b'{"model":"nomic-embed-text","input":[[1,2,3],[4,5]]}',
        formats.embeddings(VECTORS[:2], prompt_tokens=7),
        {"count": 2, "dims": 4, "encoding": "float"},
        2,
    ),
    (
        b'{"model":"nomic-embed-text","input":"just one"}',
        formats.embeddings(VECTORS[:1], prompt_tokens=7),
        {"count": 1, "dims": 4, "encoding": "float"},
        1,
    ),
]


@pytest.mark.parametrize(
    ("request_body", "response_body", "summary", "input_count"),
    EMBEDDING_VARIANTS,
    ids=["base64", "floats-despite-base64", "token-arrays", "single-string"],
)
def test_embeddings_pass_and_summarised(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    request_body: bytes,
    response_body: bytes,
    summary: dict[str, Any],
    input_count: int,
) -> None:
    """Embedding requests and vectors pass unchanged; the row keeps a summary.

    https://github.com/openai/openai-node/pull/2150
    """
    script = Script(headers=JSON, steps=[send(response_body)])
    headers = stage.play("POST", "/v1/embeddings", script)
    reply = post(appliance, client, "/v1/embeddings", headers, request_body)
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert seen.body == request_body
    assert reply.body == response_body
    assert row["path"] == "/v1/embeddings"
    assert row["is_stream"] is False
    assert row["prompt_tokens"] == 7
    assert row["completion_tokens"] is None
    assert summary in (row["response_body"], row["response_body"].get("data"))
    assert "AAAAPwAAgL4AAIA/AAAAPg==" not in json.dumps(row["response_body"])
    assert "0.125" not in json.dumps(row["response_body"])
    assert f'"input_count": {input_count}' in json.dumps(row["properties"])


HEALTH_CHECKS = [
    (
        "GET",
        "/v1/models",
        JSON,
        b'{"object":"list","data":[{"id":"llama3.2:latest","object":"model",'
        b'"created":1700000000,"owned_by":"library"}]}',
    ),
    (
        "GET",
        "/api/tags",
        JSON,
        b'{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest",'
        b'"size":2019393189}]}',
    ),
    ("GET", "/", [("Content-Type", "text/plain; charset=utf-8")], b"Ollama is running"),
    ("GET", "/api/version", JSON, formats.ollama_version()),
]


@pytest.mark.parametrize(
    ("method", "path", "upstream_headers", "body"),
    HEALTH_CHECKS,
    ids=["openai-models", "ollama-tags", "ollama-root", "ollama-version"],
)
def test_get_requests_proxied(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    method: str,
    path: str,
    upstream_headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    """Model lists and health checks pass like chat does, without a body added.

    https://github.com/diemus/azure-openai-proxy/issues/3
    """
    script = Script(headers=upstream_headers, steps=[send(body)], chunked=False)
    headers = stage.play(method, path, script)
    reply = fetch(client, method, appliance.proxy_url + path, headers=headers)
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.body == body
    for name, value in end_to_end_headers(upstream_headers):
        assert reply.headers.get(name) == value
    assert seen.body == b""
    assert "content-type" not in header_names(seen)
    assert row["method"] == method
    assert row["path"] == path
    assert row["http_status"] == 200
    assert row["latency_ms"] is not None
    assert row["prompt_tokens"] is None
    assert row["completion_tokens"] is None


def test_head_returns_headers_only(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """HEAD / keeps the upstream's Content-Length and has no body.

    https://github.com/stdapi-ai/stdapi.ai/issues/254
    """
    upstream_headers = [("Content-Type", "text/plain"), ("Content-Length", "17")]
    steps = [send(b"Ollama is running")]
    script = Script(headers=upstream_headers, steps=steps, chunked=False)
    headers = stage.play("HEAD", "/", script)
    reply = fetch(client, "HEAD", appliance.proxy_url + "/", headers=headers)
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers.get("content-length") == "17"
    assert seen.method == "HEAD"
    assert seen.body == b""
    assert "content-type" not in header_names(seen)
    assert row["method"] == "HEAD"
    assert row["path"] == "/"
    assert row["http_status"] == 200
