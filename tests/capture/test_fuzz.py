"""Property tests: splitters and the whole parser under random chunkings and input."""

import dataclasses
import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.capture import Captured, parse_exchange
from app.capture.ndjson import NdjsonSplitter
from app.capture.sse import SseSplitter

from .helpers import DONE, chat_chunk, ndjson_line

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Field values without line terminators, including non-ASCII text. NUL is left
# out because the parser replaces it on purpose.
VALUES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
    max_size=20,
)
EVENTS = st.lists(
    st.tuples(st.lists(VALUES, min_size=1, max_size=3), st.none() | VALUES), max_size=8
)
NEWLINES = st.sampled_from(["\n", "\r\n", "\r"])


def cut(data, cuts: list[int]) -> list:
    """Split data at the given positions (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def feed_all(splitter, pieces):
    out = []
    for piece in pieces:
        out.extend(splitter.feed(piece))
    out.extend(splitter.finish())
    return out


@FUZZ
@given(EVENTS, NEWLINES, st.lists(st.integers(0, 10_000), max_size=30))
def test_sse_splitter_any_chunking(events, newline, cuts):
    text = ""
    for data_lines, name in events:
        if name is not None:
            text += f"event: {name}{newline}"
        text += "".join(f"data: {line}{newline}" for line in data_lines)
        text += newline

    parsed = feed_all(SseSplitter(), cut(text, cuts))
    assert [(e.data, e.event or None) for e in parsed] == [
        ("\n".join(lines), name or None) for lines, name in events
    ]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | VALUES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(VALUES, inner, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    st.lists(st.dictionaries(VALUES, JSON_VALUES, max_size=4), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=30),
    st.booleans(),
)
def test_ndjson_splitter_any_chunking(objects, cuts, final_newline):
    text = "\n".join(json.dumps(obj, ensure_ascii=False) for obj in objects)
    if final_newline and text:
        text += "\n"

    lines = feed_all(NdjsonSplitter(), cut(text, cuts))
    assert [line.value for line in lines] == objects


STREAM = [
    chat_chunk({"role": "assistant", "content": "你好"}),
    chat_chunk({"content": " 🌍 wörld"}),
    chat_chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}
            ]
        }
    ),
    chat_chunk(
        {},
        "stop",
        usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    ),
    DONE,
]
NATIVE = [
    ndjson_line(
        {
            "model": "m",
            "message": {"role": "assistant", "content": "Grüße"},
            "done": False,
        }
    ),
    ndjson_line({"model": "m", "message": {"thinking": "hm"}, "done": False}),
    ndjson_line({"model": "m", "done": True, "eval_count": 3, "eval_duration": 10}),
]
STABLE_FIELDS = (
    "response_text",
    "reasoning_text",
    "tool_calls",
    "finish_reason",
    "usage",
    "done",
    "error_kind",
    "stream_error",
    "response_body",
    "sanitized",
)


def _captured(path, body: bytes, cuts, headers) -> Captured:
    chunks = [(float(i), piece) for i, piece in enumerate(cut(body, cuts))]
    return Captured(
        "POST", path, b'{"model":"m","stream":true}', 200, headers, chunks, False
    )


@FUZZ
@given(st.lists(st.integers(0, 100_000), max_size=40), st.booleans())
def test_sse_exchange_same_result_for_any_chunking(cuts, compressed):
    body = b"".join(STREAM)
    headers = [("content-type", "text/event-stream")]
    if compressed:
        body = gzip.compress(body)
        headers.append(("content-encoding", "gzip"))

    whole = parse_exchange(_captured("/v1/chat/completions", body, [], headers))
    split = parse_exchange(_captured("/v1/chat/completions", body, cuts, headers))
    assert whole.response_text == "你好 🌍 wörld"
    for name in STABLE_FIELDS:
        assert getattr(split, name) == getattr(whole, name), name


@FUZZ
@given(st.lists(st.integers(0, 100_000), max_size=40))
def test_ndjson_exchange_same_result_for_any_chunking(cuts):
    body = b"".join(NATIVE)
    headers = [("content-type", "application/x-ndjson")]
    whole = parse_exchange(_captured("/api/chat", body, [], headers))
    split = parse_exchange(_captured("/api/chat", body, cuts, headers))
    assert whole.response_text == "Grüße"
    for name in STABLE_FIELDS:
        assert getattr(split, name) == getattr(whole, name), name


PATHS = st.sampled_from(
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/responses",
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/api/tags",
        "/api/pull",
        "/api/show",
        "/",
        "/v1/messages",
    ]
)
CONTENT_TYPES = st.sampled_from(
    ["text/event-stream", "application/x-ndjson", "application/json", "text/plain", ""]
)
ENCODINGS = st.sampled_from(["", "gzip", "deflate", "br", "identity", "zstd"])
# Fragments of real bodies mixed with random bytes make malformed input likely.
FRAGMENTS = st.sampled_from(
    [
        *STREAM,
        *NATIVE,
        b"data:",
        b"event: error\n",
        b'{"error":',
        b"\r\n",
        b"\n\n",
        b'{"choices":[{"delta":{"tool_calls":[{"index":[]}]}}]}',
        b"\xff\xfe",
        b"\x00",
        b'{"usage":{"prompt_tokens":"x"}}',
        b'{"type":"response.completed","response":1}',
        b'{"score":1e999}',
        b"[NaN]",
        b'{"a":"\\ud800\\u0000"}',
        b'data: {"choices":[{"delta":{"content":"\\udc00"}}]}\n\n',
    ]
)


@FUZZ
@given(
    PATHS,
    st.none() | st.integers(100, 599),
    CONTENT_TYPES,
    ENCODINGS,
    st.lists(st.binary(max_size=40) | FRAGMENTS, max_size=20),
    st.binary(max_size=200) | st.sampled_from([b'{"stream":true,"messages":[1]}']),
    st.booleans(),
)
def test_parser_never_raises(
    path, status, content_type, encoding, parts, request, cut_off
):
    headers = [("content-type", content_type), ("content-encoding", encoding)]
    chunks = [(float(i), part) for i, part in enumerate(parts)]
    captured = Captured("POST", path, request, status, headers, chunks, cut_off)

    parsed = parse_exchange(captured, max_body_bytes=256)
    assert not any(note.startswith("parser failed") for note in parsed.notes)
    # Every field must fit Postgres: allow_nan=False raises on NaN and Infinity,
    # and a strict UTF-8 encode raises on a lone surrogate.
    fields = dataclasses.asdict(parsed)
    json.dumps(fields, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert not _has_nul(fields)
    assert len(parsed.timeline) <= 2000


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False
