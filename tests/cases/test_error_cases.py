"""Upstream errors, slow and silent upstreams, through the running appliance."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from app.settings import Settings
from tests.support import formats
from tests.support.upstream import Script, send, sleep

from .helpers import (
    JSON,
    SSE,
    Stage,
    body_of,
    end_to_end_headers,
    fetch,
    log_offset,
    log_since,
    rows_for_user,
    sha256,
    stored,
)

CHAT = "/v1/chat/completions"
CHAT_REQUEST = b'{"model":"mock-1","messages":[{"role":"user","content":"hi"}]}'
STREAM_REQUEST = (
    b'{"model":"mock-1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
)
RATE_LIMIT_BODY = (
    b'{"error":{"message":"Request rate limit hit (mock)","type":"requests",'
    b'"param":null,"code":"rate_limit_exceeded"}}'
)
# The proxy's default, which the session's appliance keeps.
DEFAULT_HEADER_TIMEOUT_S = 600.0
# A first byte later than this cuts off a cold model load.
MIN_DEFAULT_HEADER_TIMEOUT_S = 300.0
# A cold load of a large model can take minutes. A few seconds show the same
# behaviour (the proxy keeps waiting for headers) and keep the suite fast.
COLD_LOAD_S = 3.0


def rate_limit_script(retry_after: str) -> Script:
    headers = [
        *JSON,
        ("Retry-After", retry_after),
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "7s"),
    ]
    return Script(status=429, headers=headers, steps=[send(RATE_LIMIT_BODY)])


@pytest.mark.parametrize(
    ("retry_after", "request_body"),
    [
        ("7", CHAT_REQUEST),
        ("Wed, 01 Jan 2031 00:00:07 GMT", CHAT_REQUEST),
        ("7", STREAM_REQUEST),
    ],
    ids=["seconds", "http-date", "stream-request"],
)
def test_rate_limit_passes_retry_after(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    retry_after: str,
    request_body: bytes,
) -> None:
    """A 429 reaches the client with Retry-After under its own name.

    https://github.com/api7/aisix/issues/144
    """
    script = rate_limit_script(retry_after)
    headers = stage.play("POST", CHAT, script)
    headers["Content-Type"] = "application/json"
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=request_body,
    )
    row = stored(appliance, reply)

    assert reply.status == 429
    assert reply.body == RATE_LIMIT_BODY
    for name, value in end_to_end_headers(script.headers):
        assert reply.headers.get(name) == value
    assert len(stage.all_seen(headers, minimum=2, timeout_s=0.5)) == 1
    assert row["http_status"] == 429
    assert row["upstream_status"] == 429
    assert row["outcome"] == "upstream_http_error"
    assert row["error_kind"] == "rate_limited"
    assert row["error_message"] == "Request rate limit hit (mock)"
    assert retry_after in json.dumps(row["properties"])


def test_sdk_retries_each_stored(appliance: Any, stage: Stage) -> None:
    """Every attempt of a retrying SDK client gets its own row."""
    # The SDK honours Retry-After, so one second keeps its two retries short.
    headers = stage.play("POST", CHAT, rate_limit_script("1"))
    sdk = openai.OpenAI(
        base_url=appliance.proxy_url + "/v1",
        api_key="sk-test-PLACEHOLDER",
        max_retries=2,
        default_headers={k: v for k, v in headers.items() if k != "Authorization"},
    )

    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "hi"}]
        )
    sdk.close()
    rows = rows_for_user(appliance, headers["Helicone-User-Id"], minimum=3)

    assert len(stage.all_seen(headers, minimum=3)) == 3
    assert len(rows) == 3
    for row in rows:
        assert row["http_status"] == 429
        assert row["outcome"] == "upstream_http_error"
        assert row["error_kind"] == "rate_limited"


def configured_s(appliance: Any, name: str, default: float) -> float:
    """Return a timeout setting the appliance runs with, in seconds."""
    return float(appliance.env.get(name, default))


def header_timeout_s(appliance: Any) -> float:
    return configured_s(
        appliance, "LLMTAP_UPSTREAM_HEADER_TIMEOUT_S", DEFAULT_HEADER_TIMEOUT_S
    )


def test_default_header_timeout_allows_cold_load() -> None:
    """Out of the box the proxy waits minutes for the first byte."""
    default = Settings().upstream_header_timeout_s

    assert default >= MIN_DEFAULT_HEADER_TIMEOUT_S


def test_cold_load_waits_for_headers(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A model that takes seconds to start replying is waited for, not cut off.

    https://github.com/ParisNeo/lollms_hub/pull/37
    """
    delay_s = min(COLD_LOAD_S, header_timeout_s(appliance) / 2)
    events = formats.chat_stream(["Hello", " there"], model="big-70b")
    steps = [send(event) for event in events]
    script = Script(headers=SSE, steps=steps, delay_ms=delay_s * 1000)
    headers = stage.play("POST", CHAT, script)
    request_body = (
        b'{"model":"big-70b","stream":true,'
        b'"messages":[{"role":"user","content":"hello"}]}'
    )
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=request_body,
    )
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.sha256 == sha256(body_of(steps))
    assert seen.closed_at is None or seen.closed_at - seen.received_at >= delay_s
    assert row["outcome"] == "success"
    assert delay_s * 1000 - 50 <= row["ttft_ms"] <= delay_s * 1000 + 1500
    assert row["latency_ms"] >= delay_s * 1000


def test_silent_upstream_times_out(
    strict_appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """An upstream that never replies gets the client a 504, not a hang.

    https://github.com/danny-avila/LibreChat/issues/3330
    """
    appliance = strict_appliance
    timeout_s = header_timeout_s(appliance)
    headers = stage.play("POST", CHAT, Script(hang=True))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )
    seen = stage.seen(headers)
    row = stored(appliance, reply)
    error = json.loads(reply.body)["error"]

    assert reply.status == 504
    assert reply.headers["content-type"].startswith("application/json")
    assert error["type"] == "upstream_timeout"
    assert error["message"].startswith(
        f"upstream did not respond within {timeout_s:g}s"
    )
    assert stage.upstream.wait_closed(seen, timeout_s=5) is not None
    assert row["http_status"] == 504
    assert row["upstream_status"] is None
    assert row["outcome"] == "upstream_timeout"
    assert row["ttft_ms"] is None
    assert timeout_s * 1000 <= row["latency_ms"] <= timeout_s * 1000 + 1500


HTML_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad "
    b"Gateway</h1></center><hr><center>nginx</center></body></html>\r\n"
)
CONTEXT_400 = (
    b'{"error":{"message":"Prompt exceeds the 8192-token context window (mock).",'
    b'"type":"BadRequestError","param":"messages","code":400}}'
)
ERROR_VARIANTS = [
    (502, [("Content-Type", "text/html")], HTML_502, "<html><head><title>502"),
    (
        500,
        [("Content-Type", "text/plain; charset=utf-8")],
        b"Internal Server Error",
        "Internal Server Error",
    ),
    (
        400,
        JSON,
        CONTEXT_400,
        "Prompt exceeds the 8192-token context window (mock).",
    ),
    (503, [], b"", ""),
]


@pytest.mark.parametrize(
    ("status", "upstream_headers", "body", "message_start"),
    ERROR_VARIANTS,
    ids=["html-502", "text-500", "json-400", "empty-503"],
)
def test_error_status_and_body_kept(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    status: int,
    upstream_headers: list[tuple[str, str]],
    body: bytes,
    message_start: str,
) -> None:
    """Upstream errors keep their status, type and bytes, and are stored.

    https://github.com/KBVE/kbve/pull/11047
    """
    steps = [send(body)] if body else []
    script = Script(status=status, headers=upstream_headers, steps=steps)
    headers = stage.play("POST", CHAT, script)
    headers["Content-Type"] = "application/json"
    offset = log_offset(appliance)
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )
    row = stored(appliance, reply)
    content_type = dict(end_to_end_headers(upstream_headers)).get("content-type")

    assert reply.status == status
    assert reply.body == body
    assert reply.headers.get("content-type") == content_type
    assert reply.error is None
    assert row["http_status"] == status
    assert row["upstream_status"] == status
    assert row["outcome"] == "upstream_http_error"
    assert row["error_message"] is not None
    assert row["error_message"].startswith(message_start)
    if body and not body.startswith(b"{"):
        assert isinstance(row["response_body"], str)
    if not body:
        assert row["error_message"] == ""
    assert "Traceback" not in log_since(appliance, offset)


def test_header_and_idle_timeouts_separate(
    strict_appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A first byte later than the idle timeout is still waited for."""
    appliance = strict_appliance
    idle_s = configured_s(appliance, "LLMTAP_UPSTREAM_IDLE_TIMEOUT_S", 300)
    delay_s = (idle_s + header_timeout_s(appliance)) / 2
    steps = [send(event) for event in formats.chat_stream(["late"])]
    script = Script(headers=SSE, steps=steps, delay_ms=delay_s * 1000)
    headers = stage.play("POST", CHAT, script)
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.error is None
    assert reply.sha256 == sha256(body_of(steps))
    assert row["outcome"] == "success"


def test_idle_stream_cut_after_timeout(
    strict_appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A stream silent for longer than the idle timeout ends abnormally."""
    appliance = strict_appliance
    idle_s = configured_s(appliance, "LLMTAP_UPSTREAM_IDLE_TIMEOUT_S", 300)
    events = formats.chat_stream(["before", " after"])
    steps = [send(events[0]), sleep((idle_s + 2) * 1000)]
    steps += [send(event) for event in events[1:]]
    headers = stage.play("POST", CHAT, Script(headers=SSE, steps=steps))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.error is not None, "the client saw a clean end of a cut stream"
    assert reply.body == events[0]
    assert stage.upstream.wait_closed(seen, timeout_s=5) is not None
    assert row["outcome"] == "upstream_timeout"
    assert row["response_text"] == "before"
    assert idle_s * 1000 <= row["latency_ms"] <= idle_s * 1000 + 1500
