"""Checks of the scripted upstream itself, with httpx and raw sockets."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from . import formats
from .upstream import (
    Script,
    ScriptedUpstream,
    SeenRequest,
    close,
    end,
    raw,
    reset,
    send,
    sleep,
)

SSE = [("Content-Type", "text/event-stream")]
SPLIT_UTF8 = [
    b'data: {"content":"\xe4\xbd',
    b"\xa0\xe5\xa5\xbd \xf0\x9f",
    b'\x8c\x8d"}\n\n',
    formats.DONE_EVENT,
]


@dataclass
class RawResponse:
    """A response read byte by byte off a raw socket."""

    head: bytes
    body: bytes
    ending: str  # "eof", "reset" or "timeout"
    first_byte_at: float | None


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


def connect(upstream: ScriptedUpstream) -> socket.socket:
    port = int(upstream.url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def request_bytes(
    method: str, target: str, extra: str = "", body: bytes = b""
) -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    head = f"{method} {target} HTTP/1.1\r\nHost: upstream\r\n{length}{extra}\r\n"
    return head.encode() + body


def read_all(sock: socket.socket, timeout_s: float = 5) -> RawResponse:
    """Read until EOF, RST or `timeout_s` of silence, and split off the head."""
    sock.settimeout(timeout_s)
    data = bytearray()
    first_byte_at = None
    ending = "eof"
    while True:
        try:
            piece = sock.recv(65_536)
        except ConnectionResetError:
            ending = "reset"
            break
        except TimeoutError:
            ending = "timeout"
            break
        if not piece:
            break
        if first_byte_at is None:
            first_byte_at = time.monotonic()
        data += piece

    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return RawResponse(head, body, ending, first_byte_at)


def parse_chunks(body: bytes) -> tuple[list[bytes], bool]:
    """Split a chunked body into chunks, and report whether the last one came."""
    chunks = []
    rest = body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks, rest == b"\r\n"
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    return chunks, False


def test_send_steps_keep_chunk_boundaries(upstream: ScriptedUpstream) -> None:
    steps = [send(SPLIT_UTF8[0]), sleep(30), send(SPLIT_UTF8[1])]
    steps += [sleep(30), send(SPLIT_UTF8[2]), send(SPLIT_UTF8[3]), end()]
    upstream.route("POST", "/v1/chat/completions", Script(headers=SSE, steps=steps))

    with connect(upstream) as sock:
        extra = "Connection: close\r\n"
        sock.sendall(request_bytes("POST", "/v1/chat/completions", extra, b"{}"))
        response = read_all(sock)
    chunks, terminated = parse_chunks(response.body)

    assert response.head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in response.head
    assert chunks == SPLIT_UTF8
    assert terminated


def test_one_byte_chunks_arrive_in_order(upstream: ScriptedUpstream) -> None:
    payload = b"".join(SPLIT_UTF8)
    steps = [send(payload[i : i + 1]) for i in range(len(payload))]
    upstream.route("POST", "/bytes", Script(headers=SSE, steps=steps))

    with httpx.Client() as client:
        with client.stream("POST", upstream.url + "/bytes", content=b"{}") as response:
            received = b"".join(response.iter_raw())

    assert received == payload


def test_sleep_spaces_chunks_in_time(upstream: ScriptedUpstream) -> None:
    steps = [send(b"a"), sleep(300), send(b"b"), end()]
    upstream.route("GET", "/paced", Script(steps=steps))
    arrivals = []

    with httpx.Client() as client:
        with client.stream("GET", upstream.url + "/paced") as response:
            for _ in response.iter_raw():
                arrivals.append(time.monotonic())

    assert len(arrivals) == 2
    assert 0.25 <= arrivals[1] - arrivals[0] <= 1.0


def test_end_keeps_connection_alive(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/one", Script(steps=[send(b"first"), end()]))
    upstream.route("GET", "/two", Script(steps=[send(b"second")]))

    with httpx.Client() as client:
        first = client.get(upstream.url + "/one")
        second = client.get(upstream.url + "/two")

    assert first.content == b"first"
    assert second.content == b"second"
    assert upstream.requests[0].connection == upstream.requests[1].connection


def test_pipelined_requests_answered_in_order(upstream: ScriptedUpstream) -> None:
    upstream.route("*", "/echo", Script(echo=True))
    both = request_bytes("GET", "/echo?n=1") + request_bytes("GET", "/echo?n=2")

    with connect(upstream) as sock:
        sock.sendall(both + request_bytes("GET", "/echo?n=3", "Connection: close\r\n"))
        response = read_all(sock)

    assert response.ending == "eof"
    assert [seen.target for seen in upstream.requests] == [
        "/echo?n=1",
        "/echo?n=2",
        "/echo?n=3",
    ]


def test_close_ends_without_last_chunk(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/cut", Script(headers=SSE, steps=[send(b"Hel"), close()]))

    with connect(upstream) as sock:
        sock.sendall(request_bytes("GET", "/cut"))
        response = read_all(sock)
    chunks, terminated = parse_chunks(response.body)

    assert response.ending == "eof"
    assert chunks == [b"Hel"]
    assert not terminated


def test_close_fails_httpx_read(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/cut", Script(steps=[send(b"Hel"), close()]))

    with httpx.Client() as client, pytest.raises(httpx.RemoteProtocolError):
        client.get(upstream.url + "/cut")


def test_reset_sends_rst_after_data(upstream: ScriptedUpstream) -> None:
    steps = [send(b"Hel"), sleep(20), send(b"lo"), reset()]
    upstream.route("GET", "/rst", Script(headers=SSE, steps=steps))

    with connect(upstream) as sock:
        sock.sendall(request_bytes("GET", "/rst"))
        response = read_all(sock)
    chunks, terminated = parse_chunks(response.body)

    assert response.ending == "reset"
    assert chunks == [b"Hel", b"lo"]
    assert not terminated


def test_reset_fails_httpx_read(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/rst", Script(steps=[send(b"Hel"), reset()]))

    with httpx.Client() as client, pytest.raises(httpx.ReadError):
        client.get(upstream.url + "/rst")


def test_delay_holds_back_status_line(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/slow", Script(delay_ms=400, steps=[send(b"ok")]))

    with connect(upstream) as sock:
        sent_at = time.monotonic()
        sock.sendall(request_bytes("GET", "/slow", "Connection: close\r\n"))
        response = read_all(sock)

    assert response.first_byte_at is not None
    assert response.first_byte_at - sent_at >= 0.4
    assert response.head.startswith(b"HTTP/1.1 200 OK")


def test_hang_never_replies(upstream: ScriptedUpstream) -> None:
    upstream.route("POST", "/hang", Script(hang=True))

    with connect(upstream) as sock:
        sock.sendall(request_bytes("POST", "/hang", body=b'{"model":"big"}'))
        response = read_all(sock, timeout_s=0.5)

    assert response.ending == "timeout"
    assert response.head == b""
    assert upstream.requests[0].body == b'{"model":"big"}'


def test_wait_closed_sees_client_leave(upstream: ScriptedUpstream) -> None:
    steps = []
    for number in range(200):
        steps += [send(f"data: {number}\n\n".encode()), sleep(100)]
    upstream.route("GET", "/long", Script(headers=SSE, steps=steps))

    with httpx.Client() as client:
        with client.stream("GET", upstream.url + "/long") as response:
            next(response.iter_raw())
    request = upstream.requests[0]
    waited = upstream.wait_closed(request, timeout_s=5)

    assert waited is not None
    assert waited < 1.5


def test_wait_closed_times_out_while_open(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/hang", Script(hang=True))

    with connect(upstream) as sock:
        sock.sendall(request_bytes("GET", "/hang"))
        request = upstream.wait_request("/hang", timeout_s=5)
        assert request is not None
        waited = upstream.wait_closed(request, timeout_s=0.3)

    assert waited is None


def test_own_close_leaves_closed_at_unset(upstream: ScriptedUpstream) -> None:
    upstream.route("GET", "/cut", Script(steps=[send(b"x"), close()]))

    with connect(upstream) as sock:
        sock.sendall(request_bytes("GET", "/cut"))
        read_all(sock)
    time.sleep(0.1)

    assert upstream.requests[0].closed_at is None


def test_echo_reports_request_as_seen(upstream: ScriptedUpstream) -> None:
    upstream.route("*", "/v1/models", Script(echo=True))
    target = "/v1/models?tag=a&tag=b&q=a%2Fb%20c&empty="
    extra = "X-Mixed-Case: Value\r\nConnection: close\r\n"

    with connect(upstream) as sock:
        sock.sendall(request_bytes("POST", target, extra, body=b"hello"))
        response = read_all(sock)
    echoed = json.loads(response.body)

    assert echoed["method"] == "POST"
    assert echoed["target"] == target
    assert ["X-Mixed-Case", "Value"] in echoed["headers"]
    assert echoed["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert echoed["body_length"] == 5


def test_chunked_request_body_is_joined(upstream: ScriptedUpstream) -> None:
    upstream.route("POST", "/upload", Script(echo=True))
    chunked = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    extra = "Transfer-Encoding: chunked\r\nConnection: close\r\n"

    with connect(upstream) as sock:
        sock.sendall(request_bytes("POST", "/upload", extra) + chunked)
        read_all(sock)

    assert upstream.requests[0].body == b"hello world"


def test_large_body_arrives_whole(upstream: ScriptedUpstream) -> None:
    body = b"A" * 20_000_000
    upstream.route("POST", "/big", Script(echo=True))

    with httpx.Client(timeout=30) as client:
        echoed = client.post(upstream.url + "/big", content=body).json()

    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_continue_gets_interim_reply(upstream: ScriptedUpstream) -> None:
    upstream.route("POST", "/upload", Script(steps=[send(b"ok")], chunked=False))
    extra = "Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n"

    with connect(upstream) as sock:
        sock.sendall(request_bytes("POST", "/upload", extra))
        interim = sock.recv(100)
        sock.sendall(b"hi")
        response = read_all(sock)

    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert response.body == b"ok"


def test_head_sends_headers_only(upstream: ScriptedUpstream) -> None:
    headers = [("Content-Type", "text/plain"), ("Content-Length", "17")]
    script = Script(headers=headers, steps=[send(b"Ollama is running")], chunked=False)
    upstream.route("*", "/", script)

    with httpx.Client() as client:
        head = client.head(upstream.url + "/")
        get = client.get(upstream.url + "/")

    assert head.headers["content-length"] == "17"
    assert head.content == b""
    assert get.content == b"Ollama is running"
    assert upstream.requests[0].connection == upstream.requests[1].connection


def test_unchunked_body_gets_content_length(upstream: ScriptedUpstream) -> None:
    body = formats.chat_completion("Bonjour", usage=formats.usage_block(12, 5))
    steps = [raw(body[:10]), sleep(20), raw(body[10:])]
    upstream.route("POST", "/plain", Script(steps=steps, chunked=False))

    with httpx.Client() as client:
        response = client.post(upstream.url + "/plain", content=b"{}")

    assert response.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in response.headers
    assert response.content == body


def test_gzip_bytes_pass_unchanged(upstream: ScriptedUpstream) -> None:
    compressed = gzip.compress(formats.chat_completion("Bonjour"))
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    script = Script(headers=headers, steps=[send(compressed)], chunked=False)
    upstream.route("POST", "/gz", script)

    with httpx.Client() as client:
        with client.stream("POST", upstream.url + "/gz", content=b"{}") as response:
            received = b"".join(response.iter_raw())

    assert received == compressed


def test_status_headers_and_order_kept(upstream: ScriptedUpstream) -> None:
    headers = [("Content-Type", "application/json"), ("Retry-After", "7")]
    headers.append(("x-ratelimit-remaining-requests", "0"))
    body = formats.openai_error("Request rate limit hit (mock)", "requests", None)
    upstream.route(
        "POST", "/limited", Script(status=429, headers=headers, steps=[send(body)])
    )

    with connect(upstream) as sock:
        sock.sendall(request_bytes("POST", "/limited", "Connection: close\r\n", b"{}"))
        response = read_all(sock)

    assert response.head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert (
        b"\r\nRetry-After: 7\r\nx-ratelimit-remaining-requests: 0\r\n" in response.head
    )


def test_unrouted_request_gets_json_404(upstream: ScriptedUpstream) -> None:
    with httpx.Client() as client:
        response = client.get(upstream.url + "/nowhere")

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_default_script_replaces_404(upstream: ScriptedUpstream) -> None:
    upstream.default(Script(status=200, steps=[send(b"fallback")]))

    with httpx.Client() as client:
        response = client.get(upstream.url + "/anything")

    assert response.content == b"fallback"


def test_exact_method_beats_wildcard(upstream: ScriptedUpstream) -> None:
    upstream.route("*", "/both", Script(steps=[send(b"any")]))
    upstream.route("GET", "/both", Script(steps=[send(b"get")]))

    with httpx.Client() as client:
        get = client.get(upstream.url + "/both?x=1")
        post = client.post(upstream.url + "/both")

    assert get.content == b"get"
    assert post.content == b"any"


def test_callable_script_sees_request(upstream: ScriptedUpstream) -> None:
    def reply_with_target(request: SeenRequest) -> Script:
        headers = [("X-Raw-Target", request.target)]
        return Script(headers=headers, steps=[send(request.body or b"-")])

    upstream.route("POST", "/v1beta/models/m:embedContent", reply_with_target)
    target = "/v1beta/models/m:embedContent?key=K&alt=sse"

    with httpx.Client() as client:
        response = client.post(upstream.url + target, content=b"body")

    assert response.headers["x-raw-target"] == target
    assert response.content == b"body"


def test_failing_callable_gets_500(upstream: ScriptedUpstream) -> None:
    def broken(request: SeenRequest) -> Script:
        raise RuntimeError("script bug")

    upstream.route("GET", "/broken", broken)

    with httpx.Client() as client:
        response = client.get(upstream.url + "/broken")

    assert response.status_code == 500
    assert "script bug" in upstream.errors[0]


def test_chat_stream_builder_matches_ollama_shape() -> None:
    events = formats.chat_stream(["1, ", "2"], usage=(11, 6))
    decoded = [json.loads(event[len(b"data: ") :]) for event in events[:-1]]

    assert decoded[0]["choices"][0]["delta"] == {"role": "assistant", "content": "1, "}
    assert decoded[2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "stop",
    }
    assert decoded[3]["choices"] == []
    assert decoded[3]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 6,
        "total_tokens": 17,
    }
    assert events[-1] == b"data: [DONE]\n\n"


def test_ollama_done_line_carries_metrics() -> None:
    line = json.loads(formats.ollama_chat_done(26, 2))

    assert line["done"] is True
    assert line["done_reason"] == "stop"
    assert line["prompt_eval_count"] == 26
    assert line["eval_count"] == 2
    assert line["message"] == {"role": "assistant", "content": ""}


def test_base64_floats_round_trip() -> None:
    assert formats.base64_floats([0.5, -0.25, 1.0, 0.125]) == "AAAAPwAAgL4AAIA/AAAAPg=="
