"""Encodings, large bodies, query strings and secrets through the appliance."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import brotli
import httpx
import pytest

from tests.support import formats
from tests.support.upstream import Script, SeenRequest, Step, end, send

from .helpers import (
    JSON,
    SSE,
    Stage,
    body_of,
    fetch,
    header_map,
    header_names,
    log_offset,
    log_since,
    row_text,
    sha256,
    stored,
)

CHAT = "/v1/chat/completions"
BONJOUR = (
    b'{"id":"chatcmpl-c04","object":"chat.completion","created":1700000000,'
    b'"model":"mock-1","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Bonjour"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,'
    b'"completion_tokens":5,"total_tokens":17}}'
)
BONJOUR_REQUEST = (
    b'{"model":"mock-1","messages":[{"role":"user","content":"Say bonjour"}]}'
)


def encoded_script(encoding: str, body: bytes) -> Script:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", encoding),
        ("Content-Length", str(len(body))),
    ]
    return Script(headers=headers, steps=[send(body)], chunked=False)


def gzip_stream_steps() -> tuple[list[Step], bytes]:
    """Return a gzip SSE stream flushed after each event, and its plain text."""
    events = formats.chat_stream(["Bon", "jour"], usage=(12, 5))
    compressor = zlib.compressobj(wbits=31)
    steps = []
    for event in events:
        piece = compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
        steps.append(send(piece))
    steps += [send(compressor.flush()), end()]
    return steps, b"".join(events)


def check_encoded_passthrough(reply: Any, script: Script, plain: bytes) -> None:
    """Accept the body compressed as sent, or decoded with the header removed."""
    sent = body_of(script.steps)
    encoding = dict(script.headers).get("Content-Encoding")
    if reply.headers.get("content-encoding") == encoding:
        assert reply.sha256 == sha256(sent)
    else:
        assert "content-encoding" not in reply.headers
        assert reply.body == plain


@pytest.mark.parametrize(
    ("encoding", "compress", "accept_encoding"),
    [
        ("gzip", gzip.compress, "gzip"),
        ("br", brotli.compress, "br"),
        ("gzip", gzip.compress, None),
    ],
    ids=["gzip", "brotli", "gzip-unasked"],
)
def test_encoded_response_decoded_for_log(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    encoding: str,
    compress: Any,
    accept_encoding: str | None,
) -> None:
    """A compressed body reaches the client intact and is decoded for the row.

    https://github.com/yuki-uix/agent-cost-lab/issues/12
    """
    script = encoded_script(encoding, compress(BONJOUR))
    headers = stage.play("POST", CHAT, script)
    headers["Content-Type"] = "application/json"
    dropped: tuple[str, ...] = ()
    if accept_encoding is None:
        dropped = ("Accept-Encoding",)
    else:
        headers["Accept-Encoding"] = accept_encoding
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=BONJOUR_REQUEST,
        drop_headers=dropped,
    )
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert reply.status == 200
    check_encoded_passthrough(reply, script, BONJOUR)
    assert seen.header("Accept-Encoding") == accept_encoding
    assert isinstance(row["response_body"], dict)
    assert row["response_text"] == "Bonjour"
    assert row["prompt_tokens"] == 12
    assert row["completion_tokens"] == 5
    assert row["total_tokens"] == 17


def test_gzip_stream_assembled_for_log(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A gzip SSE stream flushed per event still gives the row its text."""
    steps, plain = gzip_stream_steps()
    upstream_headers = [*SSE, ("Content-Encoding", "gzip")]
    script = Script(headers=upstream_headers, steps=steps)
    headers = stage.play("POST", CHAT, script)
    headers.update({"Content-Type": "application/json", "Accept-Encoding": "gzip"})
    request_body = BONJOUR_REQUEST.replace(b'"messages"', b'"stream":true,"messages"')
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=request_body,
    )
    row = stored(appliance, reply)

    check_encoded_passthrough(reply, script, plain)
    assert row["is_stream"] is True
    assert row["response_text"] == "Bonjour"
    assert row["prompt_tokens"] == 12
    assert row["outcome"] == "success"


def test_false_gzip_header_read_as_text(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """A body that claims gzip but is plain passes and is still parsed."""
    script = encoded_script("gzip", BONJOUR)
    headers = stage.play("POST", CHAT, script)
    headers.update({"Content-Type": "application/json", "Accept-Encoding": "gzip"})
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=BONJOUR_REQUEST,
    )
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.body == BONJOUR
    assert reply.headers.get("content-encoding") == "gzip"
    assert row["response_text"] == "Bonjour"
    assert row["prompt_tokens"] == 12


# The proxy may hold the received body and one working copy for the stored
# row, plus slack for the parsed JSON of the redaction.
MAX_BODY_COPIES = 3


def image_request(image_count: int, image_chars: int) -> bytes:
    """Build a vision request with `image_count` inline base64 PNG data URLs."""
    content: list[dict[str, Any]] = [{"type": "text", "text": "Describe the picture"}]
    data_url = "data:image/png;base64,iVBORw0KGgo" + "A" * image_chars
    for _ in range(image_count):
        content.append({"type": "image_url", "image_url": {"url": data_url}})
    message = {"role": "user", "content": content}
    return json.dumps({"model": "vision-mock", "messages": [message]}).encode()


def proxy_peak_rss_bytes(appliance: Any) -> int:
    """Return the proxy process's peak resident memory (VmHWM), in bytes."""
    result = appliance.supervisorctl("pid", "proxy")
    pid = int(result.stdout.strip())
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM line for the proxy process {pid}")


def body_digest_reply(request: SeenRequest) -> Script:
    headers = [*JSON, ("X-Body-Sha256", hashlib.sha256(request.body).hexdigest())]
    body = formats.chat_completion("A picture.", model="vision-mock")
    return Script(headers=headers, steps=[send(body)], chunked=False)


@pytest.mark.parametrize(
    ("image_count", "image_chars"),
    [(1, 20_000_000), (3, 7_000_000)],
    ids=["one-20mb-image", "three-7mb-images"],
)
@pytest.mark.parametrize("entry", ["proxy", "nginx"])
def test_large_image_body_forwarded(
    appliance: Any,
    stage: Stage,
    client: httpx.Client,
    image_count: int,
    image_chars: int,
    entry: str,
) -> None:
    """A vision request of tens of megabytes is forwarded whole, stored small.

    https://github.com/mnfst/llm-gateway/issues/2126
    """
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    body = image_request(image_count, image_chars)
    headers = stage.play("POST", CHAT, body_digest_reply)
    headers["Content-Type"] = "application/json"
    peak_before = proxy_peak_rss_bytes(appliance)
    reply = fetch(client, "POST", base_url + CHAT, headers=headers, content=body)
    row = stored(appliance, reply)
    stored_request = json.dumps(row["request_body"])
    # The peak only moves when this request needs more than any before it, so
    # the growth is at most what this body cost, never an overcount.
    peak_growth = proxy_peak_rss_bytes(appliance) - peak_before

    assert reply.status == 200
    assert reply.headers.get("x-body-sha256") == sha256(body)
    assert len(stored_request) < 1_048_576
    assert "A" * 10_000 not in stored_request
    assert row["request_truncated"] is True
    assert row["request_bytes"] == len(body)
    assert peak_growth <= MAX_BODY_COPIES * len(body)


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
def test_oversized_body_gets_json_413(
    strict_appliance: Any, stage: Stage, client: httpx.Client, entry: str
) -> None:
    """A body over the configured limit gets 413 in the OpenAI error shape."""
    appliance = strict_appliance
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    limit = int(appliance.env["LLMTAP_MAX_REQUEST_BYTES"])
    body = image_request(1, limit + 1024)
    headers = stage.play("POST", CHAT, body_digest_reply)
    headers["Content-Type"] = "application/json"
    try:
        reply = fetch(client, "POST", base_url + CHAT, headers=headers, content=body)
    except httpx.WriteError as error:
        pytest.fail(f"the connection broke instead of a 413: {error!r}")
    error_body = json.loads(reply.body)["error"]

    assert reply.status == 413
    assert error_body["type"] == "request_too_large"
    assert "limit" in error_body["message"]
    assert stage.all_seen(headers, minimum=1, timeout_s=0.5) == []


def raw_target_reply(request: SeenRequest) -> Script:
    headers = [*JSON, ("X-Raw-Target", request.target)]
    return Script(headers=headers, steps=[send(b"{}")], chunked=False)


def send_raw_request(
    base_url: str, method: str, target: str, headers: dict[str, str]
) -> bytes:
    """Send a request with the exact target bytes, which httpx might normalise."""
    parts = urlsplit(base_url)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Length: 2", "Connection: close", "", ""]
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"{}")
        response = b""
        while piece := sock.recv(65_536):
            response += piece
    return response


def response_header(response: bytes, name: str) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


QUERY_VARIANTS = [
    (
        "POST",
        "/openai/deployments/gpt4o-prod/chat/completions",
        "api-version=2024-10-21",
        "api-version=2024-10-21",
    ),
    (
        "POST",
        "/v1beta/models/gemini-embedding-001:embedContent",
        "key=PLACEHOLDER_GOOGLE_KEY&alt=sse",
        "key=***&alt=sse",
    ),
    (
        "GET",
        "/v1/models",
        "tag=a&tag=b&q=a%2Fb%20c&empty=",
        "tag=a&tag=b&q=a%2Fb%20c&empty=",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "stored_query"),
    QUERY_VARIANTS,
    ids=["azure-api-version", "gemini-key", "repeated-and-encoded"],
)
def test_query_forwarded_byte_for_byte(
    appliance: Any,
    stage: Stage,
    method: str,
    path: str,
    query: str,
    stored_query: str,
) -> None:
    """The request target reaches the upstream unchanged, with secrets masked.

    https://github.com/BerriAI/litellm/pull/15087
    """
    headers = stage.play(method, path, raw_target_reply)
    target = f"{path}?{query}"
    offset = log_offset(appliance)
    response = send_raw_request(appliance.proxy_url, method, target, headers)
    exchange_id = response_header(response, "Helicone-Id")
    row = appliance.exchange(exchange_id, timeout_s=10) if exchange_id else None

    assert response.startswith(b"HTTP/1.1 200")
    assert response_header(response, "X-Raw-Target") == target
    assert row is not None
    assert row["path"] == path
    assert row["query"] == stored_query
    # The scripted upstream echoes the raw target back in a response header.
    text = row_text(appliance, exchange_id, without=("response_headers",))

    assert "PLACEHOLDER_GOOGLE_KEY" not in text
    assert "PLACEHOLDER_GOOGLE_KEY" not in log_since(appliance, offset)


@pytest.mark.parametrize("base_path", ["/", "/v1", "/base"])
def test_target_base_path_joined_cleanly(
    appliance: Any, stage: Stage, client: httpx.Client, base_path: str
) -> None:
    """A target URL with its own path never yields `//` or `/v1/v1`."""
    headers = stage.play("GET", "/v1/models", raw_target_reply)
    stage.upstream.route("GET", base_path + "/v1/models", stage.dispatch)
    headers["Helicone-Target-URL"] = stage.upstream.url + base_path
    reply = fetch(client, "GET", appliance.proxy_url + "/v1/models", headers=headers)
    seen = stage.seen(headers)

    assert reply.status == 200
    assert "//" not in seen.target
    assert "/v1/v1" not in seen.target
    assert seen.target.endswith("/v1/models")


SECRET_HEADERS = {
    "Authorization": "Bearer sk-test-PLACEHOLDER-1234567890abcdef",
    "x-api-key": "PLACEHOLDER-ANTHROPIC-KEY",
    "Cookie": "session=PLACEHOLDER-SESSION",
    "Proxy-Authorization": "Basic UExBQ0VIT0xERVI6UExBQ0VIT0xERVI=",
    "Helicone-Auth": "Bearer hk-PLACEHOLDER",
    "Helicone-Property-App": "demo",
    "Helicone-Session-Id": "3f0c2f0e-0000-4000-8000-000000000001",
    "Helicone-Session-Path": "/plan/step-1",
    "Keep-Alive": "timeout=5",
    "TE": "trailers",
    "Connection": "keep-alive, X-Hop-Note",
    "X-Hop-Note": "for the next hop only",
}
SECRETS = [
    "sk-test-PLACEHOLDER-1234567890abcdef",
    "PLACEHOLDER-ANTHROPIC-KEY",
    "PLACEHOLDER-SESSION",
    "UExBQ0VIT0xERVI6UExBQ0VIT0xERVI=",
    "hk-PLACEHOLDER",
]
NEVER_UPSTREAM = {"proxy-authorization", "keep-alive", "te", "x-hop-note"}


def header_names_reply(request: SeenRequest) -> Script:
    """Reply with the header names seen, but not their values.

    Echoing the values would put the credentials into the response body,
    which the proxy stores as the upstream sent it.
    """
    names = sorted({name.lower() for name, _ in request.headers})
    body = json.dumps({"seen_headers": names}).encode()
    return Script(headers=JSON, steps=[send(body)], chunked=False)


def test_secrets_masked_and_metadata_stripped(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """Credentials are masked in the row, and Helicone-* stays off the upstream.

    https://github.com/BerriAI/litellm/pull/35678
    """
    headers = stage.play("POST", CHAT, header_names_reply)
    headers.update(SECRET_HEADERS)
    headers["Helicone-User-Id"] = "user-123"
    headers["Content-Type"] = "application/json"
    request_body = b'{"model":"mock-1","messages":[{"role":"user","content":"hi"}]}'
    offset = log_offset(appliance)
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=request_body,
    )
    seen_names = set(json.loads(reply.body)["seen_headers"])
    seen = stage.seen(headers)
    row = stored(appliance, reply)
    text = row_text(appliance, reply.exchange_id or "")
    properties = {key.lower(): value for key, value in row["properties"].items()}
    logged_headers = header_map(row["request_headers"])

    assert reply.status == 200
    assert seen.header("Authorization") == SECRET_HEADERS["Authorization"]
    assert "authorization" in seen_names
    assert not {name for name in seen_names if name.startswith("helicone-")}
    assert not seen_names & NEVER_UPSTREAM
    logged = log_since(appliance, offset)
    for secret in SECRETS:
        assert secret not in text, f"{secret} is stored in clear"
        assert secret not in logged, f"{secret} is in the appliance's log"
    for name in ("authorization", "x-api-key", "cookie", "helicone-auth"):
        assert name in logged_headers
    assert row["user_id"] == "user-123"
    assert properties.get("app") == "demo"
    assert row["session_id"] == "3f0c2f0e-0000-4000-8000-000000000001"
    assert row["session_path"] == "/plan/step-1"


def test_request_headers_reach_upstream(
    appliance: Any, stage: Stage, client: httpx.Client
) -> None:
    """The upstream gets the credential and content headers unchanged."""
    headers = stage.play("POST", CHAT, Script(echo=True))
    headers["Content-Type"] = "application/json"
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=BONJOUR_REQUEST,
    )
    seen = stage.seen(headers)

    assert reply.status == 200
    assert seen.header("Authorization") == headers["Authorization"]
    assert seen.header("Content-Type") == "application/json"
    assert seen.body == BONJOUR_REQUEST
    assert "host" in header_names(seen)
    assert seen.header("Host") == urlsplit(stage.upstream.url).netloc
