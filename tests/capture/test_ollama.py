"""Parsing of Ollama native API exchanges."""

import json

import pytest

from app.capture import parse_exchange

from .helpers import (
    JSON_HEADERS,
    NDJSON_HEADERS,
    exchange,
    ndjson_line,
    one_byte_chunks,
)

FINAL_METRICS = {
    "done": True,
    "done_reason": "stop",
    "total_duration": 912000000,
    "load_duration": 15000000,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 130000000,
    "eval_count": 2,
    "eval_duration": 40000000,
}

C16_CHAT = [
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.000Z","message":'
    b'{"role":"assistant","content":"Hel"},"done":false}\n',
    b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.040Z","message":{"role":"assis',
    b'tant","content":"lo"},"done":false}\n',
    ndjson_line(
        {
            "model": "llama3.2",
            "message": {"role": "assistant", "content": ""},
            **FINAL_METRICS,
        }
    ),
]
C16_GENERATE = [
    ndjson_line({"model": "llama3.2", "response": "Hel", "done": False}),
    ndjson_line({"model": "llama3.2", "response": "lo", "done": False}),
    ndjson_line({"model": "llama3.2", "response": "", **FINAL_METRICS}),
]


@pytest.mark.parametrize(
    ("path", "parts", "ttft"),
    [
        ("/api/chat", C16_CHAT, 10),
        # The first line is complete with its newline, the len(line)-th byte.
        ("/api/chat", one_byte_chunks(C16_CHAT), 10 * len(C16_CHAT[0])),
        ("/api/generate", C16_GENERATE, 10),
    ],
    ids=["chat", "chat-one-byte", "generate"],
)
def test_native_stream_without_stream_field(path, parts, ttft):
    request = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    if path == "/api/generate":
        request = {"model": "llama3.2", "prompt": "hi"}
    parsed = parse_exchange(exchange(path, request, parts, headers=NDJSON_HEADERS))
    assert parsed.is_stream is True
    assert parsed.model == "llama3.2"
    assert parsed.response_text == "Hello"
    assert parsed.usage["prompt_tokens"] == 26
    assert parsed.usage["completion_tokens"] == 2
    assert parsed.usage["total_tokens"] == 28
    assert parsed.finish_reason == "stop"
    assert parsed.ttft_ms == ttft
    assert parsed.done is True
    assert parsed.error_kind is None
    assert parsed.prompt_text == "hi"


def test_native_metrics_give_durations_and_rate():
    parsed = parse_exchange(
        exchange("/api/chat", {"model": "llama3.2"}, C16_CHAT, headers=NDJSON_HEADERS)
    )
    assert parsed.durations == {
        "total_duration": 912.0,
        "load_duration": 15.0,
        "prompt_eval_duration": 130.0,
        "eval_duration": 40.0,
    }
    assert parsed.tokens_per_s == pytest.approx(50.0)
    assert parsed.extra["ollama"]["eval_count"] == 2


def test_native_stream_cut_before_done():
    parsed = parse_exchange(
        exchange(
            "/api/chat", {"model": "llama3.2"}, C16_CHAT[:3], headers=NDJSON_HEADERS
        )
    )
    assert parsed.done is False
    assert parsed.error_kind == "upstream_closed"
    assert parsed.usage is None


def test_native_error_line_in_stream():
    parts = [
        C16_CHAT[0],
        b'{"error":"an error was encountered while running the model"}\n',
    ]
    parsed = parse_exchange(
        exchange("/api/chat", {"model": "llama3.2"}, parts, headers=NDJSON_HEADERS)
    )
    assert parsed.stream_error == "an error was encountered while running the model"
    assert parsed.error_kind == "in_stream_error,upstream_closed"
    assert parsed.response_text == "Hel"


def test_junk_lines_do_not_stop_parsing():
    parts = [b"garbage\n", *C16_CHAT]
    parsed = parse_exchange(
        exchange("/api/chat", {"model": "llama3.2"}, parts, headers=NDJSON_HEADERS)
    )
    assert parsed.response_text == "Hello"
    assert "1 events or lines were not valid JSON" in parsed.notes


C17_STREAM = [
    ndjson_line(
        {
            "model": "qwen3",
            "message": {
                "role": "assistant",
                "content": "",
                "thinking": "Let me spell it",
            },
            "done": False,
        }
    ),
    ndjson_line(
        {
            "model": "qwen3",
            "message": {
                "role": "assistant",
                "content": "",
                "thinking": ": s-t-r-a-w-b-e-r-r-y.",
            },
            "done": False,
        }
    ),
    ndjson_line(
        {
            "model": "qwen3",
            "message": {"role": "assistant", "content": "There are 3."},
            "done": False,
        }
    ),
    ndjson_line(
        {
            "model": "qwen3",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 18,
            "eval_count": 21,
        }
    ),
]
C17_BODY = json.dumps(
    {
        "model": "qwen3",
        "message": {
            "role": "assistant",
            "content": "There are 3.",
            "thinking": "Let me spell it: s-t-r-a-w-b-e-r-r-y.",
        },
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 18,
        "eval_count": 21,
    }
).encode()


@pytest.mark.parametrize(
    ("stream", "parts", "headers", "ttft"),
    [(True, C17_STREAM, NDJSON_HEADERS, 100), (False, [C17_BODY], JSON_HEADERS, 100)],
    ids=["stream", "non-stream"],
)
def test_thinking_is_reasoning(stream, parts, headers, ttft):
    request = {
        "model": "qwen3",
        "think": True,
        "stream": stream,
        "messages": [{"role": "user", "content": "How many r in strawberry?"}],
    }
    parsed = parse_exchange(
        exchange("/api/chat", request, parts, headers=headers, step_ms=100)
    )
    assert parsed.response_text == "There are 3."
    assert parsed.reasoning_text == "Let me spell it: s-t-r-a-w-b-e-r-r-y."
    assert parsed.usage["prompt_tokens"] == 18
    assert parsed.usage["completion_tokens"] == 21
    assert parsed.ttft_ms == ttft
    assert parsed.is_stream is stream


def test_native_tool_calls_each_start_a_call():
    parts = [
        ndjson_line(
            {
                "model": "m",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "function": {
                                "name": "get_weather",
                                "arguments": {"city": "Paris"},
                            }
                        }
                    ],
                },
                "done": False,
            }
        ),
        ndjson_line(
            {
                "model": "m",
                "message": {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "function": {
                                "index": 0,
                                "name": "get_time",
                                "arguments": {"tz": "UTC"},
                            }
                        }
                    ],
                },
                "done": False,
            }
        ),
        ndjson_line(
            {
                "model": "m",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
            }
        ),
    ]
    parsed = parse_exchange(
        exchange("/api/chat", {"model": "m"}, parts, headers=NDJSON_HEADERS)
    )
    assert parsed.tool_calls == [
        {"id": None, "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"id": None, "name": "get_time", "arguments": '{"tz": "UTC"}'},
    ]


def test_stream_false_single_line_is_not_a_stream():
    body = ndjson_line({"model": "m", "response": "Hi", "done": True, "eval_count": 1})
    request = {"model": "m", "prompt": "x", "stream": False}
    parsed = parse_exchange(
        exchange("/api/generate", request, [body], headers=NDJSON_HEADERS)
    )
    assert parsed.is_stream is False
    assert parsed.response_text == "Hi"


def test_embed_is_summarized():
    body = json.dumps(
        {
            "model": "all-minilm",
            "embeddings": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
            "total_duration": 14143917,
            "load_duration": 1019500,
            "prompt_eval_count": 8,
        }
    ).encode()
    request = {
        "model": "all-minilm",
        "input": ["Why is the sky blue?", "Why is grass green?"],
    }
    parsed = parse_exchange(exchange("/api/embed", request, [body]))
    summary = {"count": 2, "dims": 3, "encoding": "float"}
    assert parsed.endpoint == "ollama.embed"
    assert parsed.response_body["embeddings"] == summary
    assert parsed.usage["prompt_tokens"] == 8
    assert parsed.usage["completion_tokens"] is None
    assert parsed.durations["total_duration"] == pytest.approx(14.143917)
    assert parsed.extra["input_count"] == 2
    assert parsed.is_stream is False


def test_legacy_embeddings_is_summarized():
    body = b'{"embedding":[0.5,0.25,0.125,1.0,2.0]}'
    parsed = parse_exchange(
        exchange("/api/embeddings", {"model": "m", "prompt": "text"}, [body])
    )
    assert parsed.response_body["embedding"] == {
        "count": 1,
        "dims": 5,
        "encoding": "float",
    }
    assert parsed.extra["input_count"] == 1
    assert parsed.notes == ["usage missing: the upstream reported no token counts"]


PULL = [
    ndjson_line({"status": "pulling manifest"}),
    ndjson_line(
        {
            "status": "pulling dde5aa3fc5ff",
            "digest": "sha256:dde5",
            "total": 2019377376,
            "completed": 0,
        }
    ),
    ndjson_line(
        {
            "status": "pulling dde5aa3fc5ff",
            "digest": "sha256:dde5",
            "total": 2019377376,
            "completed": 2019377376,
        }
    ),
    ndjson_line({"status": "verifying sha256 digest"}),
    ndjson_line({"status": "writing manifest"}),
    ndjson_line({"status": "success"}),
]


def test_pull_progress_stream():
    parsed = parse_exchange(
        exchange("/api/pull", {"model": "llama3.2"}, PULL, headers=NDJSON_HEADERS)
    )
    assert parsed.endpoint == "ollama.pull"
    assert parsed.is_stream is True
    assert parsed.done is True
    assert parsed.extra["pull"]["status"] == "success"
    assert parsed.extra["pull"]["layers"] == {"sha256:dde5": 2019377376}
    assert parsed.usage is None
    assert parsed.notes == []
    assert [entry[2] for entry in parsed.timeline][-1] == "done"


def test_pull_cut_before_success():
    parsed = parse_exchange(
        exchange("/api/pull", {"model": "llama3.2"}, PULL[:3], headers=NDJSON_HEADERS)
    )
    assert parsed.done is False
    assert parsed.error_kind == "upstream_closed"


@pytest.mark.parametrize(
    ("method", "path", "body", "count"),
    [
        (
            "GET",
            "/api/tags",
            b'{"models":[{"name":"llama3.2:latest","model":"llama3.2:latest","size":2019393189}]}',
            1,
        ),
        ("GET", "/api/ps", b'{"models":[]}', 0),
        (
            "POST",
            "/api/show",
            b'{"modelfile":"FROM x","parameters":"","template":""}',
            None,
        ),
        ("GET", "/api/version", b'{"version":"0.33.0"}', None),
    ],
    ids=["tags", "ps", "show", "version"],
)
def test_info_endpoints_store_json(method, path, body, count):
    parsed = parse_exchange(exchange(path, None, [body], method=method))
    assert parsed.response_body == json.loads(body)
    assert parsed.extra.get("model_count") == count
    assert parsed.usage is None
    assert parsed.notes == []
    assert parsed.done is True
