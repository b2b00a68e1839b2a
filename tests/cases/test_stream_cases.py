"""Streamed OpenAI-compatible responses through the running appliance.

Each test scripts the upstream's exact bytes, sends a request to the proxy and
checks both what the client read and the exchange row the proxy stored.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx
import pytest

from tests.support import formats
from tests.support.upstream import Script, Step, close, end, reset, send, sleep

from .helpers import (
    REPLACEMENT_CHARACTER,
    SSE,
    Reply,
    Stage,
    body_of,
    end_to_end_headers,
    fetch,
    log_offset,
    log_since,
    sha256,
    stored,
)

CHAT = "/v1/chat/completions"
STREAM_REQUEST = (
    b'{"model":"mock-1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
)


def chunk(completion_id: str, delta: str, finish: str | None = None) -> bytes:
    """Return one compact chat chunk event with a single choice."""
    finish_json = json.dumps(finish)
    return (
        f'data: {{"id":"{completion_id}","object":"chat.completion.chunk",'
        f'"created":1700000000,"model":"mock-1","choices":[{{"index":0,'
        f'"delta":{delta},"finish_reason":{finish_json}}}]}}\n\n'
    ).encode()


def stream_chat(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    steps: list[Step],
    request_body: bytes = STREAM_REQUEST,
    base_url: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> tuple[Reply, dict[str, str]]:
    """Play `steps` as an SSE reply to a streamed chat request and fetch it."""
    headers = stage.play("POST", CHAT, Script(headers=SSE, steps=steps))
    headers["Content-Type"] = "application/json"
    headers.update(extra_headers or {})
    url = (base_url or appliance.proxy_url) + CHAT
    reply = fetch(client, "POST", url, headers=headers, content=request_body)
    return reply, headers


# Split UTF-8: 你 = e4 bd a0, 好 = e5 a5 bd, 🌍 = f0 9f 8c 8d.
UTF8_SPLIT = [
    b'data: {"id":"c01","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"\xe4\xbd',
    b"\xa0\xe5\xa5\xbd \xf0\x9f",
    b'\x8c\x8d"},"finish_reason":null}]}\n\n',
    chunk("c01", "{}", "stop"),
    formats.DONE_EVENT,
]


def split_utf8_steps() -> list[Step]:
    steps = [send(UTF8_SPLIT[0]), sleep(30), send(UTF8_SPLIT[1]), sleep(30)]
    return steps + [send(piece) for piece in UTF8_SPLIT[2:]] + [end()]


def one_byte_steps() -> list[Step]:
    payload = b"".join(UTF8_SPLIT)
    return [send(payload[i : i + 1]) for i in range(len(payload))] + [end()]


@pytest.mark.parametrize(
    "make_steps",
    [split_utf8_steps, one_byte_steps],
    ids=["split-across-chunks", "one-byte-per-chunk"],
)
def test_utf8_split_across_chunks_kept(
    appliance: Any, stage: Stage, client: httpx.Client, make_steps: Any
) -> None:
    """A character split between chunks stays whole in both copies.

    https://github.com/api7/aisix/issues/111
    """
    steps = make_steps()
    reply, _ = stream_chat(appliance, stage, client, steps)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.error is None
    assert reply.sha256 == sha256(body_of(steps))
    assert REPLACEMENT_CHARACTER not in reply.body
    assert row["response_text"] == "你好 🌍"
    assert "\ufffd" not in json.dumps(row["response_body"], ensure_ascii=False)
    assert row["outcome"] == "success"
    assert row["is_stream"] is True
    assert row["ttft_ms"] is not None


NO_USAGE_EVENTS = [
    chunk("c02", '{"role":"assistant","content":"1, "}'),
    chunk("c02", '{"content":"2, 3"}'),
    chunk("c02", "{}", "stop"),
]
USAGE_EVENT = (
    b'data: {"id":"c02","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[],"usage":{"prompt_tokens":11,'
    b'"completion_tokens":6,"total_tokens":17}}\n\n'
)
COUNT_REQUEST = (
    b'{"model":"mock-1","stream":true,'
    b'"messages":[{"role":"user","content":"Count to three"}]}'
)
COUNT_REQUEST_WITH_USAGE = (
    b'{"model":"mock-1","stream":true,"stream_options":{"include_usage":true},'
    b'"messages":[{"role":"user","content":"Count to three"}]}'
)


def test_stream_without_usage_stores_null(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """Unknown token counts are NULL, never 0.

    https://github.com/Helicone/helicone/pull/2279
    """
    steps = [send(event) for event in NO_USAGE_EVENTS + [formats.DONE_EVENT]] + [end()]
    reply, _ = stream_chat(appliance, stage, client, steps, COUNT_REQUEST)
    row = stored(appliance, reply)

    assert reply.sha256 == sha256(body_of(steps))
    assert row["response_text"] == "1, 2, 3"
    assert row["prompt_tokens"] is None
    assert row["completion_tokens"] is None
    assert row["total_tokens"] is None
    assert row["usage_source"] == "none"


def asked_for_usage(body: bytes) -> bool:
    options = json.loads(body).get("stream_options") or {}
    return options.get("include_usage") is True


def usage_if_asked(request: Any) -> Script:
    """Send the usage chunk only when the request asked for it, as Ollama does."""
    events = list(NO_USAGE_EVENTS)
    if asked_for_usage(request.body):
        events.append(USAGE_EVENT)
    events.append(formats.DONE_EVENT)
    return Script(headers=SSE, steps=[send(event) for event in events] + [end()])


def test_injected_usage_hidden_from_client(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A usage chunk the proxy asked for itself never reaches the client.

    With LLMTAP_INJECT_STREAM_USAGE off, the request must arrive unchanged
    and the row has no usage. With it on, the row has the usage, and the
    client still sees a stream without the usage-only chunk.
    https://github.com/Helicone/helicone/pull/2202
    """
    headers = stage.play("POST", CHAT, usage_if_asked)
    headers["Content-Type"] = "application/json"
    url = appliance.proxy_url + CHAT
    reply = fetch(client, "POST", url, headers=headers, content=COUNT_REQUEST)
    seen = stage.seen(headers)
    row = stored(appliance, reply)
    expected_client_bytes = b"".join([*NO_USAGE_EVENTS, formats.DONE_EVENT])

    assert reply.sha256 == sha256(expected_client_bytes)
    assert b'"choices":[]' not in reply.body
    if asked_for_usage(seen.body):
        assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 6)
        assert row["total_tokens"] == 17
        assert row["usage_source"] == "reported"
    else:
        assert seen.body == COUNT_REQUEST
        assert row["prompt_tokens"] is None
        assert row["usage_source"] == "none"


def test_client_requested_usage_forwarded(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A usage chunk the client asked for is forwarded and stored."""
    events = [*NO_USAGE_EVENTS, USAGE_EVENT, formats.DONE_EVENT]
    steps = [send(event) for event in events] + [end()]
    reply, headers = stream_chat(
        appliance, stage, client, steps, COUNT_REQUEST_WITH_USAGE
    )
    row = stored(appliance, reply)

    assert stage.seen(headers).body == COUNT_REQUEST_WITH_USAGE
    assert reply.sha256 == sha256(body_of(steps))
    assert row["prompt_tokens"] == 11
    assert row["completion_tokens"] == 6
    assert row["total_tokens"] == 17
    assert row["usage_source"] == "reported"


HELLO_EVENTS = [
    chunk("c07", '{"role":"assistant","content":"Hel"}'),
    chunk("c07", '{"content":"lo"}'),
]
HALF_LINE = b'data: {"id":"c07","object":"chat.completion.chunk","choices":[{"ind'


@pytest.mark.parametrize(
    ("ending", "expected_kinds"),
    [
        ([close()], {"upstream_closed"}),
        ([reset()], {"upstream_closed", "upstream_reset"}),
        ([send(HALF_LINE), close()], {"upstream_closed"}),
    ],
    ids=["fin", "rst", "fin-mid-line"],
)
def test_upstream_cut_ends_client_abnormally(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    ending: list[Step],
    expected_kinds: set[str],
) -> None:
    """A stream cut by the upstream is not turned into a clean 200.

    https://github.com/gpustack/gpustack/issues/5939
    """
    steps = [send(HELLO_EVENTS[0]), sleep(50), send(HELLO_EVENTS[1]), sleep(50)]
    steps += ending
    reply, _ = stream_chat(appliance, stage, client, steps)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.error is not None, "the client saw a clean end of a cut stream"
    assert reply.sha256 == sha256(body_of(steps))
    assert b"[DONE]" not in reply.body
    assert row["upstream_status"] == 200
    assert row["outcome"] == "upstream_incomplete"
    assert row["error_kind"] in expected_kinds
    assert row["response_text"] == "Hello"
    assert row["finish_reason"] is None
    assert row["completion_tokens"] is None or row["usage_source"] == "estimated"
    assert 80 <= row["latency_ms"] <= 2000


def long_stream_steps(count: int = 200, pause_ms: float = 100) -> list[Step]:
    steps: list[Step] = []
    for number in range(count):
        delta = json.dumps({"content": f"w{number} "})
        steps += [send(chunk("c08", delta)), sleep(pause_ms)]
    return steps + [send(formats.DONE_EVENT), end()]


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
def test_client_leaving_closes_upstream(
    appliance: Any, stage: Stage, client: httpx.Client, entry: str
) -> None:
    """The upstream connection closes within a second of the client leaving.

    https://github.com/BerriAI/litellm/issues/30244
    """
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    headers = stage.play("POST", CHAT, Script(headers=SSE, steps=long_stream_steps()))
    headers["Content-Type"] = "application/json"
    offset = log_offset(appliance)

    received = b""
    with client.stream(
        "POST", base_url + CHAT, headers=headers, content=STREAM_REQUEST
    ) as response:
        exchange_id = response.headers.get("helicone-id")
        for piece in response.iter_raw():
            received += piece
            if received.count(b"\n\n") >= 3:
                break
    left_at = time.monotonic()
    seen = stage.seen(headers)
    upstream_open_s = stage.upstream.wait_closed(seen, timeout_s=5)
    row = appliance.exchange(exchange_id, timeout_s=10) if exchange_id else None

    assert exchange_id is not None
    assert upstream_open_s is not None, "the proxy kept the upstream open"
    assert seen.closed_at is not None
    assert seen.closed_at - left_at <= 1.0
    assert row is not None
    assert row["http_status"] == 200
    assert row["outcome"] == "client_disconnected"
    assert (row["response_text"] or "").startswith("w0 w1 w2 ")
    assert row["ttft_ms"] is not None
    assert row["latency_ms"] <= (left_at - seen.received_at) * 1000 + 1000
    assert "Traceback" not in log_since(appliance, offset)


TOOL_EVENTS = [
    chunk(
        "c11",
        '{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a",'
        '"type":"function","function":{"name":"get_weather","arguments":""}}]}',
    ),
    chunk(
        "c11", '{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":"}}]}'
    ),
    chunk("c11", '{"tool_calls":[{"index":0,"function":{"arguments":"\\"Par"}}]}'),
    chunk("c11", '{"tool_calls":[{"index":0,"function":{"arguments":"is\\"}"}}]}'),
    chunk(
        "c11",
        '{"tool_calls":[{"index":1,"id":"call_b","type":"function",'
        '"function":{"name":"get_time","arguments":""}}]}',
    ),
    chunk(
        "c11",
        '{"tool_calls":[{"index":1,"function":{"arguments":"{\\"tz\\":\\"UTC\\"}"}}]}',
    ),
    chunk("c11", "{}", "tool_calls"),
    formats.DONE_EVENT,
]
OLLAMA_TOOL_EVENTS = [
    chunk(
        "c11",
        '{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"call_a",'
        '"type":"function","function":{"name":"get_weather",'
        '"arguments":"{\\"city\\":\\"Paris\\"}"}}]}',
    ),
    chunk(
        "c11",
        '{"tool_calls":[{"index":0,"id":"call_b","type":"function",'
        '"function":{"name":"get_time","arguments":"{\\"tz\\":\\"UTC\\"}"}}]}',
    ),
    chunk("c11", "{}", "tool_calls"),
    formats.DONE_EVENT,
]
EXPECTED_TOOL_CALLS = [
    {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'},
    {"id": "call_b", "name": "get_time", "arguments": '{"tz":"UTC"}'},
]
TOOLS_REQUEST = (
    b'{"model":"mock-1","stream":true,"messages":[{"role":"user","content":'
    b'"Weather and time?"}],"tools":[{"type":"function","function":{"name":'
    b'"get_weather"}},{"type":"function","function":{"name":"get_time"}}]}'
)


@pytest.mark.parametrize(
    "events", [TOOL_EVENTS, OLLAMA_TOOL_EVENTS], ids=["by-index", "same-index-new-id"]
)
def test_tool_call_deltas_assembled(
    appliance: Any, stage: Stage, client: httpx.Client, events: list[bytes]
) -> None:
    """Tool-call fragments join per call, and a new id starts a new call.

    https://github.com/ollama/ollama/issues/15457
    """
    steps = [send(event) for event in events] + [end()]
    reply, _ = stream_chat(appliance, stage, client, steps, TOOLS_REQUEST)
    row = stored(appliance, reply)

    assert reply.sha256 == sha256(body_of(steps))
    assert row["tool_calls"] == EXPECTED_TOOL_CALLS
    assert row["finish_reason"] == "tool_calls"
    assert not row["response_text"]


NO_SPACE_EVENTS = [
    b'data:{"id":"c24","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"delta":{"role":"assistant",'
    b'"content":"Hi"},"finish_reason":null}]}\n\n',
    b'data:  {"id":"c24","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"delta":{"content":" there"},'
    b'"finish_reason":"stop"}]}\n\n',
    b"data:[DONE]\n\n",
]


def test_data_without_space_parsed(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """`data:` with no space after the colon is a valid SSE field.

    https://github.com/praxis-proxy/praxis/pull/739
    """
    steps = [send(event) for event in NO_SPACE_EVENTS] + [end()]
    sse_utf8 = [("Content-Type", "text/event-stream; charset=utf-8")]
    headers = stage.play("POST", CHAT, Script(headers=sse_utf8, steps=steps))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )
    row = stored(appliance, reply)
    kinds = [entry[2] for entry in row["timeline"] or []]

    assert reply.sha256 == sha256(body_of(steps))
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert row["response_text"] == "Hi there"
    assert row["finish_reason"] == "stop"
    assert row["outcome"] == "success"
    assert "done" in kinds


COMMENT_STEPS = [
    send(b": PROXY PROCESSING\n\n"),
    sleep(1000),
    send(b": PROXY PROCESSING\n\n"),
    sleep(1000),
    send(chunk("c26", '{"role":"assistant","content":"Hey"}')),
    send(b": ping - 2025-01-01 00:00:02.000000+00:00\n\n"),
    send(b":\n\n"),
    send(chunk("c26", "{}", "stop")),
    send(formats.DONE_EVENT),
    end(),
]


def test_sse_comments_forwarded_in_place(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """Comment lines pass unchanged and at once, and do not count as tokens.

    https://github.com/Portkey-AI/gateway/issues/1035
    """
    reply, _ = stream_chat(appliance, stage, client, COMMENT_STEPS)
    row = stored(appliance, reply)
    first_arrival_s = reply.arrivals[0][0]

    assert reply.sha256 == sha256(body_of(COMMENT_STEPS))
    assert reply.arrivals[0][1].startswith(b": PROXY PROCESSING")
    assert first_arrival_s < 0.5
    assert row["response_text"] == "Hey"
    assert row["outcome"] == "success"
    assert row["first_byte_ms"] < 500
    assert 1900 <= row["ttft_ms"] <= 2600


OVERLOADED = (
    b'event: error\ndata: {"error":{"message":"upstream overloaded, retry later",'
    b'"type":"server_error","code":"overloaded"}}\n\n'
)
PARTIAL = chunk("c27", '{"role":"assistant","content":"Partial"}')
PARTIAL_WITH_FIELDS = b"id: 7\nretry: 3000\n" + PARTIAL
INVALID_MODEL = (
    b'event: error\ndata: {"error":{"message":"invalid model parameter",'
    b'"type":"invalid_request_error","code":400}}\n\n'
)
VLLM_ERROR = (
    b'data: {"object":"error","message":"context window exceeded (mock)",'
    b'"type":"BadRequestError","code":400}\n\n'
)


@pytest.mark.parametrize(
    ("steps", "message", "text", "cut"),
    [
        (
            [send(PARTIAL), send(OVERLOADED), close()],
            "upstream overloaded, retry later",
            "Partial",
            True,
        ),
        ([send(INVALID_MODEL), end()], "invalid model parameter", None, False),
        (
            [send(VLLM_ERROR), send(formats.DONE_EVENT), end()],
            "context window exceeded (mock)",
            None,
            False,
        ),
        (
            [send(PARTIAL_WITH_FIELDS), send(OVERLOADED), end()],
            "upstream overloaded, retry later",
            "Partial",
            False,
        ),
    ],
    ids=["error-event-then-close", "error-event-only", "vllm-error-object", "id-retry"],
)
def test_error_inside_200_stream_recorded(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    steps: list[Step],
    message: str,
    text: str | None,
    cut: bool,
) -> None:
    """An error reported inside a 200 stream is stored as an in-stream error.

    https://github.com/openclaw/clawrouter/issues/101
    """
    reply, _ = stream_chat(appliance, stage, client, steps)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.sha256 == sha256(body_of(steps))
    assert (reply.error is not None) == cut
    assert row["http_status"] == 200
    assert row["outcome"] == "in_stream_error"
    assert row["error_message"] == message
    assert (row["response_text"] or None) == text
    if cut:
        assert "upstream_closed" in (row["error_kind"] or "")


USAGE_TAIL = [
    b'data: {"id":"c28","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"mock-1","choices":[],"usage":{"prompt_tokens":9,'
    b'"completion_tokens":3,"total_tokens":12}}\n\n',
    b'data: {"id":"c28","object":"chat.completion.chunk","usage":'
    b'{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}\n\n',
]
USAGE_REQUEST = (
    b'{"model":"mock-1","stream":true,"stream_options":{"include_usage":true},'
    b'"messages":[{"role":"user","content":"hi"}]}'
)


def content_with_null_usage(delta: str, finish: str | None = None) -> bytes:
    return (
        b'data: {"id":"c28","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"mock-1","choices":[{"index":0,"delta":'
        + delta.encode()
        + b',"finish_reason":'
        + json.dumps(finish).encode()
        + b'}],"usage":null}\n\n'
    )


@pytest.mark.parametrize("tail", USAGE_TAIL, ids=["empty-choices", "no-choices-key"])
def test_usage_only_chunk_stored(
    appliance: Any, stage: Stage, client: httpx.Client, tail: bytes
) -> None:
    """The final usage chunk without choices is read, not tripped over.

    https://github.com/Portkey-AI/gateway/issues/1627
    """
    events = [
        content_with_null_usage('{"role":"assistant","content":"a"}'),
        content_with_null_usage('{"content":"b"}'),
        content_with_null_usage("{}", "stop"),
        tail,
        formats.DONE_EVENT,
    ]
    steps = [send(event) for event in events] + [end()]
    offset = log_offset(appliance)
    reply, _ = stream_chat(appliance, stage, client, steps, USAGE_REQUEST)
    row = stored(appliance, reply)

    assert reply.sha256 == sha256(body_of(steps))
    assert reply.body.endswith(b"data: [DONE]\n\n")
    assert row["prompt_tokens"] == 9
    assert row["completion_tokens"] == 3
    assert row["total_tokens"] == 12
    assert row["usage_source"] == "reported"
    assert row["response_text"] == "ab"
    assert "Traceback" not in log_since(appliance, offset)


def tick_event(number: int) -> bytes:
    # About 120 bytes, like a real content chunk.
    return chunk("c29", json.dumps({"content": f"tick {number}"}))


TICK_LEAD_MS = 500
TICK_REQUEST = (
    b'{"model":"mock-1","stream":true,"messages":[{"role":"user","content":"tick"}]}'
)


def tick_steps() -> list[Step]:
    """Return five ticks one second apart, after a lead before the first."""
    steps = [sleep(TICK_LEAD_MS)]
    for number in range(1, 6):
        steps += [send(tick_event(number)), sleep(1000)]
    return steps + [send(formats.DONE_EVENT), end()]


def event_arrivals(reply: Reply) -> list[float]:
    """Return the arrival time of each complete SSE event, in seconds."""
    times = []
    seen = b""
    for at, piece in reply.arrivals:
        before = seen.count(b"\n\n")
        seen += piece
        times += [at] * (seen.count(b"\n\n") - before)
    return times


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
def test_events_arrive_unbuffered(
    appliance: Any, stage: Stage, client: httpx.Client, entry: str
) -> None:
    """Each event reaches the client when the upstream sends it.

    https://github.com/open-webui/docs/pull/308
    """
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    steps = tick_steps()
    reply, _ = stream_chat(
        appliance,
        stage,
        client,
        steps,
        request_body=TICK_REQUEST,
        base_url=base_url,
        extra_headers={"Accept-Encoding": "gzip, deflate, br"},
    )
    row = stored(appliance, reply)
    arrivals = event_arrivals(reply)
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    total_ms = reply.arrivals[-1][0] * 1000

    assert reply.sha256 == sha256(body_of(steps))
    assert "content-encoding" not in reply.headers
    assert reply.headers.get("cache-control") == "no-cache"
    if entry == "proxy":
        # nginx reads X-Accel-Buffering itself and does not pass it on.
        assert reply.headers.get("x-accel-buffering") == "no"
    assert reply.headers_at < TICK_LEAD_MS / 1000 - 0.2
    assert len(arrivals) == 6
    for gap in gaps[:4]:
        # NOTE: the slack is 200 ms because the test machines are shared and
        # have two cores. A buffered stream would show gaps near 0 instead.
        assert 0.8 <= gap <= 1.2
    assert abs(row["ttft_ms"] - arrivals[0] * 1000) <= 150
    assert abs(row["latency_ms"] - total_ms) <= 150


HOP_BY_HOP_RESPONSE = [
    ("Keep-Alive", "timeout=99"),
    ("Connection", "X-Upstream-Hop"),
    ("X-Upstream-Hop", "for the proxy only"),
    ("Proxy-Authenticate", "Basic"),
]


def test_response_hop_headers_dropped(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """Headers meant for one connection stop at the proxy."""
    upstream_headers = [*SSE, *HOP_BY_HOP_RESPONSE]
    steps = [send(NO_USAGE_EVENTS[0]), send(formats.DONE_EVENT), end()]
    headers = stage.play("POST", CHAT, Script(headers=upstream_headers, steps=steps))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )

    assert reply.status == 200
    assert reply.headers.get("keep-alive") != "timeout=99"
    assert "x-upstream-hop" not in reply.headers
    assert "proxy-authenticate" not in reply.headers
    assert reply.sha256 == sha256(body_of(steps))


def test_stream_headers_kept(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """End-to-end response headers of a stream pass unchanged."""
    upstream_headers = [*SSE, ("X-Request-Id", "req-77"), ("Openai-Model", "mock-1")]
    steps = [send(NO_USAGE_EVENTS[0]), send(formats.DONE_EVENT), end()]
    headers = stage.play("POST", CHAT, Script(headers=upstream_headers, steps=steps))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )

    for name, value in end_to_end_headers(upstream_headers):
        assert reply.headers.get(name) == value
