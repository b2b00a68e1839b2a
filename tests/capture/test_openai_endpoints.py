"""Parsing of HTTP errors and of the other OpenAI-compatible endpoints."""

import json

import pytest

from app.capture import parse_exchange

from .helpers import DONE, JSON_HEADERS, SSE_HEADERS, event, exchange

CHAT = "/v1/chat/completions"
CHAT_REQUEST = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}

RATE_LIMIT_HEADERS = [
    ("content-type", "application/json"),
    ("retry-after", "7"),
    ("x-ratelimit-limit-requests", "60"),
    ("x-ratelimit-remaining-requests", "0"),
    ("x-ratelimit-reset-requests", "7s"),
]
RATE_LIMIT_BODY = (
    b'{"error":{"message":"Request rate limit hit (mock)","type":"requests",'
    b'"param":null,"code":"rate_limit_exceeded"}}'
)


@pytest.mark.parametrize(
    ("retry_after", "stream"),
    [("7", False), ("Wed, 01 Jan 2031 00:00:07 GMT", False), ("7", True)],
    ids=["seconds", "http-date", "stream-request"],
)
def test_rate_limited_response(retry_after, stream):
    headers = [
        (k, retry_after if k == "retry-after" else v) for k, v in RATE_LIMIT_HEADERS
    ]
    request = {**CHAT_REQUEST, "stream": stream}
    parsed = parse_exchange(exchange(CHAT, request, [RATE_LIMIT_BODY], 429, headers))
    assert parsed.error_kind == "rate_limited"
    assert parsed.error_message == "Request rate limit hit (mock)"
    assert parsed.extra["retry_after"] == retry_after
    assert parsed.extra["ratelimit"]["x-ratelimit-remaining-requests"] == "0"
    assert parsed.stream_error is None
    assert parsed.usage is None


HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
    b"Gateway</h1></center><hr><center>nginx</center></body></html>\r\n"
)
JSON_400 = (
    b'{"error":{"message":"Prompt exceeds the 8192-token context window (mock).",'
    b'"type":"BadRequestError","param":"messages","code":400}}'
)


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind", "message", "stored"),
    [
        (
            502,
            [("content-type", "text/html")],
            HTML_502,
            "bad_gateway",
            HTML_502.decode().strip(),
            HTML_502.decode(),
        ),
        (
            500,
            [("content-type", "text/plain; charset=utf-8")],
            b"Internal Server Error",
            "server_error",
            "Internal Server Error",
            "Internal Server Error",
        ),
        (
            400,
            JSON_HEADERS,
            JSON_400,
            "bad_request",
            "Prompt exceeds the 8192-token context window (mock).",
            json.loads(JSON_400),
        ),
        (503, [], b"", "unavailable", "", None),
    ],
    ids=["A-html-502", "B-text-500", "C-json-400", "D-empty-503"],
)
def test_http_error_bodies(status, headers, body, kind, message, stored):
    parts = [body] if body else []
    parsed = parse_exchange(exchange(CHAT, CHAT_REQUEST, parts, status, headers))
    assert parsed.error_kind == kind
    assert parsed.error_message == message
    assert parsed.response_body == stored


def test_error_message_is_capped():
    body = b"x" * 2000
    parsed = parse_exchange(exchange(CHAT, CHAT_REQUEST, [body], 500, []))
    assert len(parsed.error_message) == 500


def test_ollama_style_error_body():
    body = b'{"error":"model \\"nope\\" not found, try pulling it first"}'
    parsed = parse_exchange(exchange("/api/chat", {"model": "nope"}, [body], 404))
    assert parsed.error_kind == "not_found"
    assert parsed.error_message == 'model "nope" not found, try pulling it first'


def test_error_status_with_sse_body():
    body = b'event: error\ndata: {"error":{"message":"bad key"}}\n\n'
    parsed = parse_exchange(exchange(CHAT, CHAT_REQUEST, [body], 401, SSE_HEADERS))
    assert parsed.error_kind == "unauthorized"
    assert parsed.error_message == "bad key"
    assert parsed.stream_error is None


EMBED_REQUEST = {
    "model": "nomic-embed-text",
    "input": ["first text", "second text", "third"],
    "encoding_format": "base64",
}
EMBED_BASE64 = (
    b'{"object":"list","data":[{"object":"embedding","index":0,'
    b'"embedding":"AAAAPwAAgL4AAIA/AAAAPg=="},{"object":"embedding","index":1,'
    b'"embedding":"AAAAAAAAAEAAAIC/AABAPw=="},{"object":"embedding","index":2,'
    b'"embedding":"AAAAPwAAgL4AAIA/AAAAPg=="}],"model":"nomic-embed-text",'
    b'"usage":{"prompt_tokens":7,"total_tokens":7}}'
)
EMBED_FLOAT = json.dumps(
    {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.5, -0.25, 1.0, 0.125]}
            for i in range(3)
        ],
        "model": "nomic-embed-text",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
).encode()


@pytest.mark.parametrize(
    ("body", "encoding"),
    [(EMBED_BASE64, "base64"), (EMBED_FLOAT, "float")],
    ids=["base64", "float-despite-base64-request"],
)
def test_embeddings_are_summarized(body, encoding):
    parsed = parse_exchange(exchange("/v1/embeddings", EMBED_REQUEST, [body]))
    summary = {"count": 3, "dims": 4, "encoding": encoding}
    assert parsed.endpoint == "openai.embeddings"
    assert parsed.response_body["data"] == summary
    assert parsed.extra["embeddings"] == summary
    assert parsed.usage["prompt_tokens"] == 7
    assert parsed.usage["completion_tokens"] is None
    assert parsed.is_stream is False
    assert parsed.extra["input_count"] == 3
    assert parsed.response_text is None


@pytest.mark.parametrize(
    ("request_input", "count"),
    [([[1, 2, 3], [4, 5]], 2), ("one text", 1), ([1, 2, 3], 1)],
    ids=["token-arrays", "single-string", "single-token-array"],
)
def test_embeddings_input_count(request_input, count):
    request = {"model": "m", "input": request_input}
    parsed = parse_exchange(exchange("/v1/embeddings", request, [EMBED_FLOAT]))
    assert parsed.extra["input_count"] == count


MODELS_BODY = (
    b'{"object":"list","data":[{"id":"llama3.2:latest","object":"model",'
    b'"created":1700000000,"owned_by":"library"}]}'
)


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "endpoint", "stored"),
    [
        (
            "GET",
            "/v1/models",
            JSON_HEADERS,
            MODELS_BODY,
            "openai.models",
            json.loads(MODELS_BODY),
        ),
        (
            "GET",
            "/v1/models/llama3.2:latest",
            JSON_HEADERS,
            b'{"id":"llama3.2:latest"}',
            "openai.models",
            {"id": "llama3.2:latest"},
        ),
        (
            "GET",
            "/",
            [("content-type", "text/plain")],
            b"Ollama is running",
            "other",
            "Ollama is running",
        ),
        ("HEAD", "/", [("content-length", "17")], b"", "other", None),
    ],
    ids=["models", "model-by-id", "root-get", "root-head"],
)
def test_listing_and_health_checks(method, path, headers, body, endpoint, stored):
    parts = [body] if body else []
    parsed = parse_exchange(exchange(path, None, parts, 200, headers, method=method))
    assert parsed.endpoint == endpoint
    assert parsed.response_body == stored
    assert parsed.usage is None
    assert parsed.error_kind is None
    assert parsed.done is True
    assert parsed.notes == []


COMPLETIONS = "/v1/completions"


def test_completions_stream():
    def chunk(text, finish=None):
        payload = {
            "id": "cmpl-1",
            "object": "text_completion",
            "model": "mock-1",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    parts = [chunk("Once"), chunk(" upon"), chunk("", "length"), DONE]
    request = {"model": "mock-1", "prompt": "Tell a story", "stream": True}
    parsed = parse_exchange(exchange(COMPLETIONS, request, parts, headers=SSE_HEADERS))
    assert parsed.endpoint == "openai.completions"
    assert parsed.response_text == "Once upon"
    assert parsed.finish_reason == "length"
    assert parsed.prompt_text == "Tell a story"
    assert parsed.done is True


def test_completions_non_stream():
    body = {
        "id": "cmpl-2",
        "object": "text_completion",
        "choices": [{"index": 0, "text": "42", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    request = {"model": "mock-1", "prompt": ["a", "What is the answer?"]}
    parsed = parse_exchange(exchange(COMPLETIONS, request, [json.dumps(body).encode()]))
    assert parsed.response_text == "42"
    assert parsed.usage["total_tokens"] == 6
    assert parsed.prompt_text == "What is the answer?"


RESPONSES = "/v1/responses"


def _text_delta(text: str) -> bytes:
    payload = {
        "type": "response.output_text.delta",
        "item_id": "m1",
        "output_index": 0,
        "content_index": 0,
        "delta": text,
    }
    return event(payload, "response.output_text.delta")


RESPONSE_COMPLETED = {
    "type": "response.completed",
    "response": {
        "id": "r1",
        "status": "completed",
        "model": "mock-1",
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "Hello"}]}
        ],
        "usage": {
            "input_tokens": 8,
            "output_tokens": 2,
            "total_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    },
}


def test_responses_stream():
    created = {"type": "response.created", "response": {"id": "r1", "model": "m"}}
    parts = [
        event(created, "response.created"),
        _text_delta("Hel"),
        _text_delta("lo"),
        event(RESPONSE_COMPLETED, "response.completed"),
    ]
    request = {"model": "mock-1", "input": "Say hello", "stream": True}

    parsed = parse_exchange(exchange(RESPONSES, request, parts, headers=SSE_HEADERS))

    assert parsed.endpoint == "openai.responses"
    assert parsed.response_text == "Hello"
    assert parsed.usage["prompt_tokens"] == 8
    assert parsed.usage["completion_tokens"] == 2
    assert parsed.usage["total_tokens"] == 10
    assert parsed.usage["reasoning_tokens"] == 0
    assert parsed.done is True
    assert parsed.error_kind is None
    assert parsed.finish_reason == "completed"
    assert parsed.ttft_ms == 20
    assert parsed.prompt_text == "Say hello"


def test_responses_final_event_without_deltas():
    parts = [event(RESPONSE_COMPLETED, "response.completed")]
    parsed = parse_exchange(
        exchange(RESPONSES, {"input": "x"}, parts, headers=SSE_HEADERS)
    )
    assert parsed.response_text == "Hello"
    assert parsed.done is True
    assert parsed.ttft_ms == 10


def test_responses_model_from_stream_events():
    parts = [_text_delta("Hi"), event(RESPONSE_COMPLETED, "response.completed")]
    parsed = parse_exchange(
        exchange(RESPONSES, {"input": "x"}, parts, headers=SSE_HEADERS)
    )
    assert parsed.model == "mock-1"


def test_responses_stream_function_call_and_reasoning():
    parts = [
        event({"type": "response.reasoning_summary_text.delta", "delta": "Need tool."}),
        event(
            {
                "type": "response.output_item.added",
                "output_index": 1,
                "item": {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "get_weather",
                    "arguments": "",
                },
            }
        ),
        event(
            {
                "type": "response.function_call_arguments.delta",
                "output_index": 1,
                "item_id": "fc_1",
                "delta": '{"city":',
            }
        ),
        event(
            {
                "type": "response.function_call_arguments.delta",
                "output_index": 1,
                "item_id": "fc_1",
                "delta": '"Paris"}',
            }
        ),
        event({"type": "response.completed", "response": {"status": "completed"}}),
    ]
    parsed = parse_exchange(
        exchange(RESPONSES, {"input": "x"}, parts, headers=SSE_HEADERS)
    )
    assert parsed.reasoning_text == "Need tool."
    assert parsed.tool_calls == [
        {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    ]


def test_responses_failed_event_is_stream_error():
    parts = [
        event(
            {
                "type": "response.failed",
                "response": {
                    "status": "failed",
                    "error": {"code": "server_error", "message": "it broke"},
                },
            }
        ),
    ]
    parsed = parse_exchange(
        exchange(RESPONSES, {"input": "x"}, parts, headers=SSE_HEADERS)
    )
    assert parsed.stream_error == "it broke"
    assert parsed.error_kind == "in_stream_error"


def test_responses_non_stream():
    body = {
        "id": "r2",
        "object": "response",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "model": "mock-1",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Hmm"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Partial answer"}],
            },
            {
                "type": "function_call",
                "call_id": "call_x",
                "name": "f",
                "arguments": "{}",
            },
        ],
        "usage": {
            "input_tokens": 3,
            "output_tokens": 4,
            "total_tokens": 7,
            "input_tokens_details": {"cached_tokens": 2},
        },
    }
    request = {
        "model": "mock-1",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Explain"}]}
        ],
    }
    parsed = parse_exchange(exchange(RESPONSES, request, [json.dumps(body).encode()]))
    assert parsed.response_text == "Partial answer"
    assert parsed.reasoning_text == "Hmm"
    assert parsed.finish_reason == "max_output_tokens"
    assert parsed.usage["cached_tokens"] == 2
    assert parsed.tool_calls == [{"id": "call_x", "name": "f", "arguments": "{}"}]
    assert parsed.prompt_text == "Explain"


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("POST", "/v1/chat/completions", "openai.chat"),
        ("POST", "/openai/deployments/gpt4o/chat/completions", "openai.chat"),
        ("POST", "/v1/completions", "openai.completions"),
        ("POST", "/v1/embeddings", "openai.embeddings"),
        ("GET", "/v1/models", "openai.models"),
        ("POST", "/v1/responses", "openai.responses"),
        ("POST", "/api/chat", "ollama.chat"),
        ("POST", "/api/generate", "ollama.generate"),
        ("POST", "/api/embed", "ollama.embed"),
        ("POST", "/api/embeddings", "ollama.embeddings"),
        ("GET", "/api/tags", "ollama.tags"),
        ("POST", "/api/show", "ollama.show"),
        ("GET", "/api/ps", "ollama.ps"),
        ("GET", "/api/version", "ollama.version"),
        ("POST", "/api/pull", "ollama.pull"),
        ("POST", "/v1beta/models/gemini-embedding-001:embedContent", "other"),
        ("POST", "/v1/messages", "other"),
        ("GET", "/", "other"),
    ],
)
def test_endpoint_from_path(method, path, endpoint):
    parsed = parse_exchange(exchange(path, None, [], 200, [], method=method))
    assert parsed.endpoint == endpoint
