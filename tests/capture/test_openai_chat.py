"""Parsing of OpenAI-compatible chat completion exchanges, streamed and not."""

import gzip
import json
import zlib

import brotli
import pytest

from app.capture import parse_exchange

from .helpers import (
    DONE,
    JSON_HEADERS,
    SSE_HEADERS,
    chat_chunk,
    exchange,
    one_byte_chunks,
)

CHAT = "/v1/chat/completions"
STREAM_REQUEST = {
    "model": "mock-1",
    "stream": True,
    "messages": [{"role": "user", "content": "Greet me"}],
}

C01_PARTS = [
    b'data: {"id":"c01","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"\xe4\xbd',
    b"\xa0\xe5\xa5\xbd \xf0\x9f",
    b'\x8c\x8d"},"finish_reason":null}]}\n\n',
    chat_chunk({}, "stop", completion_id="c01"),
    DONE,
]


@pytest.mark.parametrize(
    "parts", [C01_PARTS, one_byte_chunks(C01_PARTS)], ids=["split-reads", "one-byte"]
)
def test_utf8_split_across_chunks(parts):
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.response_text == "你好 🌍"
    assert "\ufffd" not in parsed.response_body
    assert parsed.is_stream is True
    assert parsed.done is True
    assert parsed.ttft_ms is not None
    assert parsed.error_kind is None
    assert parsed.sanitized is False


def test_ttft_is_chunk_that_completes_first_content():
    parsed = parse_exchange(
        exchange(CHAT, STREAM_REQUEST, C01_PARTS, headers=SSE_HEADERS, step_ms=30)
    )
    assert parsed.first_byte_ms == 30
    assert parsed.ttft_ms == 90


C02_PARTS = [
    chat_chunk({"role": "assistant", "content": "1, "}),
    chat_chunk({"content": "2, 3"}),
    chat_chunk({}, "stop"),
]
USAGE_CHUNK = (
    b'data: {"choices":[],"usage":{"prompt_tokens":11,'
    b'"completion_tokens":6,"total_tokens":17}}\n\n'
)


def test_stream_without_usage_stores_none():
    parsed = parse_exchange(
        exchange(CHAT, STREAM_REQUEST, [*C02_PARTS, DONE], headers=SSE_HEADERS)
    )
    assert parsed.usage is None
    assert parsed.response_text == "1, 2, 3"
    assert parsed.tokens_per_s is None
    assert any(note.startswith("usage missing") for note in parsed.notes)


@pytest.mark.parametrize("injected", [True, False], ids=["injected", "client-asked"])
def test_stream_usage_chunk_is_reported(injected):
    request = {**STREAM_REQUEST, "stream_options": {"include_usage": True}}
    captured = exchange(
        CHAT, request, [*C02_PARTS, USAGE_CHUNK, DONE], headers=SSE_HEADERS
    )
    if injected:
        captured = type(captured)(**{**_fields(captured), "injected_usage": True})
    parsed = parse_exchange(captured)
    assert parsed.usage == {
        "prompt_tokens": 11,
        "completion_tokens": 6,
        "total_tokens": 17,
        "cached_tokens": None,
        "reasoning_tokens": None,
    }
    assert parsed.extra.get("injected_usage", False) is injected


def test_stream_tokens_per_second_from_usage_and_timing():
    parsed = parse_exchange(
        exchange(
            CHAT,
            STREAM_REQUEST,
            [*C02_PARTS, USAGE_CHUNK, DONE],
            headers=SSE_HEADERS,
            step_ms=100,
        )
    )
    # First content at 100 ms, last chunk at 500 ms: 6 tokens in 0.4 s.
    assert parsed.tokens_per_s == pytest.approx(15.0)


C04_BODY = (
    b'{"id":"chatcmpl-c04","object":"chat.completion","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Bonjour"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}'
)
NON_STREAM_REQUEST = {
    "model": "mock-1",
    "messages": [{"role": "user", "content": "Say bonjour"}],
}


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", gzip.compress(C04_BODY)),
        ("br", brotli.compress(C04_BODY)),
        ("gzip", C04_BODY),
        # Captured has no request headers, so a body compressed without
        # Accept-Encoding is the same input as variant a.
        ("gzip", gzip.compress(C04_BODY, compresslevel=1)),
        ("deflate", zlib.compress(C04_BODY)),
    ],
    ids=["a-gzip", "c-br", "d-gzip-header-plain-body", "e-gzip-unrequested", "deflate"],
)
def test_compressed_json_body_is_decoded(encoding, data):
    headers = [*JSON_HEADERS, ("content-encoding", encoding)]
    parsed = parse_exchange(exchange(CHAT, NON_STREAM_REQUEST, [data], headers=headers))
    assert parsed.response_text == "Bonjour"
    assert parsed.usage["prompt_tokens"] == 12
    assert parsed.usage["completion_tokens"] == 5
    assert parsed.usage["total_tokens"] == 17
    assert parsed.response_body["id"] == "chatcmpl-c04"
    assert parsed.error_kind is None
    assert parsed.done is True


def test_gzip_stream_flushed_per_event_assembles_text():
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    parts = [
        compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH)
        for part in [*C02_PARTS, DONE]
    ]
    parts[-1] += compressor.flush()
    headers = [*SSE_HEADERS, ("content-encoding", "gzip")]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=headers))
    assert parsed.response_text == "1, 2, 3"
    assert parsed.done is True
    assert parsed.ttft_ms == 10


def test_undecodable_brotli_keeps_body_and_no_usage():
    headers = [*JSON_HEADERS, ("content-encoding", "br")]
    parsed = parse_exchange(
        exchange(CHAT, NON_STREAM_REQUEST, [b"\xff\xfe\xfd garbage"], headers=headers)
    )
    assert parsed.error_kind == "undecodable_body"
    assert parsed.usage is None
    assert isinstance(parsed.response_body, str)
    assert "garbage" in parsed.response_body


def test_non_stream_ttft_is_last_chunk():
    parts = [C04_BODY[:40], C04_BODY[40:]]
    parsed = parse_exchange(exchange(CHAT, NON_STREAM_REQUEST, parts, step_ms=25))
    assert parsed.is_stream is False
    assert parsed.first_byte_ms == 25
    assert parsed.ttft_ms == 50


C07_PARTS = [
    chat_chunk({"role": "assistant", "content": "Hel"}, completion_id="c07"),
    chat_chunk({"content": "lo"}, completion_id="c07"),
]


@pytest.mark.parametrize(
    "parts",
    [C07_PARTS, [*C07_PARTS, b'data: {"id":"c07","object":"chat.com']],
    ids=["close-between-events", "close-mid-line"],
)
def test_stream_closed_early_keeps_partial_text(parts):
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.response_text == "Hello"
    assert parsed.done is False
    assert parsed.finish_reason is None
    assert parsed.error_kind == "upstream_closed"
    assert parsed.usage is None


def test_proxy_truncated_capture_is_not_upstream_closed():
    parsed = parse_exchange(
        exchange(CHAT, STREAM_REQUEST, C07_PARTS, headers=SSE_HEADERS, truncated=True)
    )
    assert parsed.error_kind is None
    assert parsed.response_truncated is True
    assert parsed.done is False


def _tool_chunk(calls: list[dict], role: bool = False) -> bytes:
    delta: dict = {"tool_calls": calls}
    if role:
        delta = {"role": "assistant", "content": None, **delta}
    return chat_chunk(delta, completion_id="c11")


def _call(index: int, call_id: str | None = None, name: str | None = None, args=""):
    function: dict = {"arguments": args}
    if name is not None:
        function["name"] = name
    call: dict = {"index": index, "function": function}
    if call_id is not None:
        call.update({"id": call_id, "type": "function"})
    return call


C11_INDEXED = [
    _tool_chunk([_call(0, "call_a", "get_weather")], role=True),
    _tool_chunk([_call(0, args='{"city":')]),
    _tool_chunk([_call(0, args='"Par')]),
    _tool_chunk([_call(0, args='is"}')]),
    _tool_chunk([_call(1, "call_b", "get_time")]),
    _tool_chunk([_call(1, args='{"tz":"UTC"}')]),
    chat_chunk({}, "tool_calls", completion_id="c11"),
    DONE,
]
C11_SAME_INDEX = [
    _tool_chunk([_call(0, "call_a", "get_weather", '{"city":"Paris"}')], role=True),
    _tool_chunk([_call(0, "call_b", "get_time", '{"tz":"UTC"}')]),
    chat_chunk({}, "tool_calls", completion_id="c11"),
    DONE,
]
C11_EXPECTED = [
    {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
    {"id": "call_b", "name": "get_time", "arguments": '{"tz":"UTC"}'},
]


@pytest.mark.parametrize(
    "parts", [C11_INDEXED, C11_SAME_INDEX], ids=["by-index", "same-index-new-id"]
)
def test_tool_call_deltas_assemble(parts):
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.tool_calls == C11_EXPECTED
    assert parsed.finish_reason == "tool_calls"
    assert parsed.response_text is None
    assert parsed.choices[0]["tool_calls"] == C11_EXPECTED
    assert parsed.ttft_ms == 10


def test_non_stream_tool_calls_are_kept_apart():
    body = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city":"Paris"}',
                            },
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {
                                "name": "get_time",
                                "arguments": '{"tz":"UTC"}',
                            },
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    parsed = parse_exchange(
        exchange(CHAT, NON_STREAM_REQUEST, [json.dumps(body).encode()])
    )
    assert parsed.tool_calls == C11_EXPECTED


def test_several_choices_are_kept_apart():
    parts = [
        chat_chunk({"role": "assistant", "content": "A"}, index=0),
        chat_chunk({"role": "assistant", "content": "B"}, index=1),
        chat_chunk({"content": "a"}, index=0),
        chat_chunk({"content": "b"}, "length", index=1),
        chat_chunk({}, "stop", index=0),
        DONE,
    ]
    parsed = parse_exchange(
        exchange(CHAT, {**STREAM_REQUEST, "n": 2}, parts, headers=SSE_HEADERS)
    )
    assert [c["text"] for c in parsed.choices] == ["Aa", "Bb"]
    assert [c["finish_reason"] for c in parsed.choices] == ["stop", "length"]
    assert parsed.response_text == "Aa"
    assert parsed.finish_reason == "stop"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_kept_apart_from_content(field):
    parts = [
        chat_chunk({"role": "assistant", field: "Think"}),
        chat_chunk({field: "ing."}),
        chat_chunk({"content": "Answer"}),
        chat_chunk({}, "stop"),
        DONE,
    ]
    parsed = parse_exchange(
        exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS, step_ms=10)
    )
    assert parsed.reasoning_text == "Thinking."
    assert parsed.response_text == "Answer"
    assert parsed.ttft_ms == 10
    assert parsed.timeline[0][2] == "reasoning"


def test_both_reasoning_fields_with_same_text_count_once():
    parts = [
        chat_chunk({"reasoning_content": "Hmm", "reasoning": "Hmm"}),
        chat_chunk({"content": "Yes"}, "stop"),
        DONE,
    ]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.reasoning_text == "Hmm"


def test_reasoning_and_cached_tokens_from_usage_details():
    body = {
        "choices": [
            {"index": 0, "message": {"content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "total_tokens": 140,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    parsed = parse_exchange(
        exchange(CHAT, NON_STREAM_REQUEST, [json.dumps(body).encode()])
    )
    assert parsed.usage["cached_tokens"] == 64
    assert parsed.usage["reasoning_tokens"] == 30


C24_PARTS = [
    b'data:{"id":"c24","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"Hi"},"finish_reason":null}]}\n\n',
    b'data:  {"id":"c24","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"delta":{"content":" there"},'
    b'"finish_reason":"stop"}]}\n\n',
    b"data:[DONE]\n\n",
]


def test_data_without_space_is_parsed():
    headers = [("content-type", "text/event-stream; charset=utf-8")]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, C24_PARTS, headers=headers))
    assert parsed.response_text == "Hi there"
    assert parsed.finish_reason == "stop"
    assert parsed.done is True
    assert parsed.notes == [
        "usage missing: the upstream reported no token counts "
        "(the request did not set stream_options.include_usage)"
    ]


C26_PARTS = [
    b": PROXY PROCESSING\n\n",
    b": PROXY PROCESSING\n\n",
    chat_chunk({"role": "assistant", "content": "Hey"}, completion_id="c26"),
    b": ping - 2025-01-01 00:00:02.000000+00:00\n\n",
    b":\n\n",
    chat_chunk({}, "stop", completion_id="c26"),
    DONE,
]


def test_comments_are_not_content():
    captured = exchange(CHAT, STREAM_REQUEST, C26_PARTS, headers=SSE_HEADERS)
    chunks = [(0.5, C26_PARTS[0]), (1000.0, C26_PARTS[1])]
    chunks += [(2000.0 + i, part) for i, part in enumerate(C26_PARTS[2:])]
    parsed = parse_exchange(type(captured)(**{**_fields(captured), "chunks": chunks}))
    assert parsed.response_text == "Hey"
    assert parsed.first_byte_ms == 0.5
    assert parsed.ttft_ms == 2000.0
    assert [entry[2] for entry in parsed.timeline].count("comment") == 4
    assert parsed.error_kind is None


def test_ttft_skips_role_and_empty_content():
    parts = [
        chat_chunk({"role": "assistant"}),
        chat_chunk({"content": ""}),
        chat_chunk({"content": "x"}),
        DONE,
    ]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.ttft_ms == 30
    assert parsed.timeline[0][2] == "role"


ERROR_A = (
    b'event: error\ndata: {"error":{"message":"upstream overloaded, retry later",'
    b'"type":"server_error","code":"overloaded"}}\n\n'
)
ERROR_B = (
    b'event: error\ndata: {"error":{"message":"invalid model parameter",'
    b'"type":"invalid_request_error","code":400}}\n\n'
)
ERROR_C = (
    b'data: {"object":"error","message":"context window exceeded (mock)",'
    b'"type":"BadRequestError","code":400}\n\n'
)


@pytest.mark.parametrize(
    ("parts", "message", "kind", "text"),
    [
        (
            [chat_chunk({"role": "assistant", "content": "Partial"}), ERROR_A],
            "upstream overloaded, retry later",
            "in_stream_error,upstream_closed",
            "Partial",
        ),
        # Without [DONE] the parser cannot tell a clean end from a close.
        ([ERROR_B], "invalid model parameter", "in_stream_error,upstream_closed", None),
        ([ERROR_C, DONE], "context window exceeded (mock)", "in_stream_error", None),
    ],
    ids=["A-after-content-then-close", "B-only-event", "C-vllm-object"],
)
def test_error_inside_200_stream(parts, message, kind, text):
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.stream_error == message
    assert parsed.error_kind == kind
    assert parsed.response_text == text
    assert parsed.error_message is None


def test_error_event_with_id_and_retry_lines():
    part = b'id: 7\nretry: 3000\nevent: error\ndata: {"error":{"message":"boom"}}\n\n'
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, [part], headers=SSE_HEADERS))
    assert parsed.stream_error == "boom"
    assert parsed.timeline[0][2] == "error"


def test_id_and_retry_lines_on_a_content_event():
    part = b"id: 7\nretry: 3000\n" + chat_chunk({"content": "ok"}, "stop")
    parsed = parse_exchange(
        exchange(CHAT, STREAM_REQUEST, [part, DONE], headers=SSE_HEADERS)
    )
    assert parsed.response_text == "ok"
    assert parsed.stream_error is None


def test_error_event_with_plain_text_data():
    part = b"event: error\ndata: upstream went away\n\n"
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, [part], headers=SSE_HEADERS))
    assert parsed.stream_error == "upstream went away"


USAGE_FINAL = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}


@pytest.mark.parametrize(
    "last",
    [
        {
            "id": "c28",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": USAGE_FINAL,
        },
        {"id": "c28", "object": "chat.completion.chunk", "usage": USAGE_FINAL},
    ],
    ids=["empty-choices", "no-choices-key"],
)
def test_final_usage_chunk_is_kept(last):
    parts = [
        chat_chunk({"role": "assistant", "content": "a"}, usage=None),
        chat_chunk({"content": "b"}, usage=None),
        chat_chunk({}, "stop", usage=None),
        b"data: " + json.dumps(last).encode() + b"\n\n",
        DONE,
    ]
    request = {**STREAM_REQUEST, "stream_options": {"include_usage": True}}
    parsed = parse_exchange(exchange(CHAT, request, parts, headers=SSE_HEADERS))
    assert parsed.usage["prompt_tokens"] == 9
    assert parsed.usage["completion_tokens"] == 3
    assert parsed.usage["total_tokens"] == 12
    assert parsed.response_text == "ab"
    assert parsed.done is True


def test_null_usage_after_real_usage_is_ignored():
    parts = [
        chat_chunk({"content": "a"}, usage=USAGE_FINAL),
        chat_chunk({}, "stop", usage=None),
        DONE,
    ]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.usage["total_tokens"] == 12


def test_request_fields_are_read():
    request = {
        "model": "mock-1",
        "user": "alice",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,AAA"},
                    },
                ],
            },
        ],
    }
    parsed = parse_exchange(exchange(CHAT, request, [C04_BODY]))
    assert parsed.request_user == "alice"
    assert parsed.prompt_text == "What is this?"
    assert parsed.model == "mock-1"


def test_model_falls_back_to_response():
    request = {"messages": [{"role": "user", "content": "hi"}]}
    parsed = parse_exchange(exchange(CHAT, request, [C04_BODY]))
    assert parsed.model == "mock-1"


def test_prompt_snippet_is_capped():
    request = {"messages": [{"role": "user", "content": "x" * 2000}]}
    parsed = parse_exchange(exchange(CHAT, request, [C04_BODY]))
    assert len(parsed.prompt_text) == 500


def test_stream_body_stored_as_text():
    parts = [*C02_PARTS, DONE]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.response_body == b"".join(parts).decode()


def test_large_stream_body_is_capped_but_fully_parsed():
    parts = [chat_chunk({"content": "x" * 100}) for _ in range(50)] + [
        USAGE_CHUNK,
        DONE,
    ]
    parsed = parse_exchange(
        exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS),
        max_body_bytes=1000,
    )
    assert len(parsed.response_body.encode()) <= 1000
    assert parsed.response_truncated is True
    assert parsed.usage["total_tokens"] == 17
    assert len(parsed.response_text) == 5000
    assert "response body truncated at 1000 bytes" in parsed.notes


def test_timeline_is_capped_with_note():
    parts = [chat_chunk({"content": "x"}) for _ in range(2100)] + [DONE]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert len(parsed.timeline) == 2000
    assert "timeline keeps the first 2000 of 2101 entries" in parsed.notes


def test_nul_escape_in_content_is_sanitized():
    parts = [chat_chunk({"content": "a\u0000b"}), DONE]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=SSE_HEADERS))
    assert parsed.response_text == "a\ufffdb"
    assert parsed.sanitized is True


def test_raw_nul_in_stored_body_is_replaced():
    parsed = parse_exchange(
        exchange("/", None, [b"abc\x00def"], method="GET", headers=[])
    )
    assert parsed.response_body == "abc\ufffddef"
    assert parsed.sanitized is True


def test_lone_surrogate_escape_is_sanitized():
    body = b'{"choices":[{"index":0,"message":{"content":"a\\ud800b"}}]}'
    parsed = parse_exchange(exchange(CHAT, NON_STREAM_REQUEST, [body]))
    assert parsed.response_text == "a\ufffdb"
    assert parsed.sanitized is True


def test_overflowing_number_becomes_null():
    body = b'{"choices":[{"index":0,"message":{"content":"ok"}}],"score":1e400}'
    parsed = parse_exchange(exchange(CHAT, NON_STREAM_REQUEST, [body]))
    assert parsed.response_body["score"] is None
    assert parsed.sanitized is True


def test_nan_literal_is_not_json():
    body = b'{"choices":[{"index":0,"message":{"content":"ok"}}],"score":NaN}'
    parsed = parse_exchange(exchange(CHAT, NON_STREAM_REQUEST, [body]))
    assert parsed.response_body == body.decode()
    assert parsed.error_kind == "invalid_json"


def test_sse_without_content_type_is_sniffed():
    parts = [*C02_PARTS, DONE]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=[]))
    assert parsed.response_text == "1, 2, 3"
    assert parsed.is_stream is True


def test_sse_labelled_json_is_still_parsed():
    parts = [*C02_PARTS, DONE]
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, parts, headers=JSON_HEADERS))
    assert parsed.response_text == "1, 2, 3"


def test_no_response_gives_empty_parse():
    parsed = parse_exchange(exchange(CHAT, STREAM_REQUEST, [], status=None, headers=[]))
    assert parsed.done is False
    assert parsed.response_body is None
    assert parsed.model == "mock-1"
    assert "no response arrived from the upstream" in parsed.notes


def _fields(captured) -> dict:
    return {name: getattr(captured, name) for name in captured.__slots__}
