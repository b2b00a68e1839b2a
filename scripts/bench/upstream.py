"""A fast model-server stand-in for the benchmarks, on raw asyncio protocols.

It responds with pre-encoded bytes, so it costs little CPU and is never the
bottleneck of a run. Routes, chosen by path so that any proxy in front can pick
one without rewriting bodies:

- `POST /v1/chat/completions`: a JSON chat completion, or an SSE stream of 20
  content events and `[DONE]` when the body has `"stream": true`.
- `POST /slow/v1/chat/completions`: the same stream with 10 ms between events.
- `POST /api/chat`: an Ollama NDJSON stream of 20 events and a `done` event
  (one JSON object when the body has `"stream": false`).
- `POST /slow/api/chat`: the same NDJSON stream with 10 ms between events.
- `POST /echo/...`: a JSON chat completion whose content is the sha256 and the
  length of the request body, so that a client can check a large body
  arrived intact.
- `GET /v1/models`, `GET /`: small JSON answers for health checks.

Run it with `python -m scripts.bench.upstream --port 0`; it prints
`listening on PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import Any, cast

EVENT_COUNT = 20
SLOW_GAP_S = 0.010
MODEL = "bench"
MAX_HEAD_BYTES = 65_536
STREAM_FLAG = re.compile(rb'"stream"\s*:\s*(true|false)')
INCLUDE_USAGE = re.compile(rb'"include_usage"\s*:\s*true')

CHAT_TEXT = "The quick brown fox jumps over the lazy dog. " * 2
CHAT_USAGE = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}


def _chat_completion(content: str) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": CHAT_USAGE,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _sse_chunk(delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _sse_events() -> list[bytes]:
    """Build the 20 content events of a stream; the first also carries the role."""
    events = []
    for index in range(EVENT_COUNT):
        delta = {"content": f"tok{index} "}
        if index == 0:
            delta["role"] = "assistant"
        chunk = _sse_chunk(delta)
        events.append(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    return events


def _sse_tail(include_usage: bool) -> list[bytes]:
    tail = [b"data: " + json.dumps(_sse_chunk({}, "stop")).encode() + b"\n\n"]
    if include_usage:
        usage_chunk = _sse_chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = CHAT_USAGE
        tail.append(b"data: " + json.dumps(usage_chunk).encode() + b"\n\n")
    tail.append(b"data: [DONE]\n\n")
    return tail


def _ndjson_events() -> list[bytes]:
    events = []
    for index in range(EVENT_COUNT):
        line = {
            "model": MODEL,
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": f"tok{index} "},
            "done": False,
        }
        events.append(json.dumps(line).encode() + b"\n")
    return events


def _ndjson_done() -> dict:
    return {
        "model": MODEL,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "prompt_eval_count": 12,
        "eval_count": EVENT_COUNT,
    }


SSE_EVENTS = _sse_events()
SSE_TAIL = {flag: _sse_tail(flag) for flag in (False, True)}
NDJSON_EVENTS = _ndjson_events()
NDJSON_DONE = json.dumps(_ndjson_done()).encode() + b"\n"
NDJSON_SINGLE = json.dumps(
    {**_ndjson_done(), "message": {"role": "assistant", "content": CHAT_TEXT}}
).encode()
CHAT_JSON = _chat_completion(CHAT_TEXT)
MODELS_JSON = json.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}
).encode()


def fixed_response(status: int, content_type: str, body: bytes) -> bytes:
    """Encode a complete response with a Content-Length body."""
    head = (
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


def chunk(data: bytes) -> bytes:
    """Frame `data` as one HTTP/1.1 chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def stream_head(content_type: str) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\n"
        f"Content-Type: {content_type}\r\n"
        "Cache-Control: no-cache\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
    ).encode()


CHAT_RESPONSE = fixed_response(200, "application/json", CHAT_JSON)
MODELS_RESPONSE = fixed_response(200, "application/json", MODELS_JSON)
NDJSON_SINGLE_RESPONSE = fixed_response(200, "application/json", NDJSON_SINGLE)
NOT_FOUND = fixed_response(404, "application/json", b'{"error":"not found"}')
SSE_HEAD = stream_head("text/event-stream")
NDJSON_HEAD = stream_head("application/x-ndjson")
SSE_FAST_BODY = {
    flag: [SSE_HEAD + chunk(SSE_EVENTS[0])]
    + [chunk(event) for event in SSE_EVENTS[1:] + SSE_TAIL[flag]]
    + [b"0\r\n\r\n"]
    for flag in (False, True)
}
NDJSON_FAST_BODY = (
    [NDJSON_HEAD + chunk(NDJSON_EVENTS[0])]
    + [chunk(event) for event in NDJSON_EVENTS[1:] + [NDJSON_DONE]]
    + [b"0\r\n\r\n"]
)


class RequestParser:
    """Incremental HTTP/1.1 request parser for Content-Length and chunked bodies."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next_request(self) -> tuple[str, str, bytes, bool] | None:
        """Return (method, path, body, keep_alive) once a whole request is buffered."""
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise ValueError("request head is larger than 64 KiB")
            return None

        lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()

        body_start = head_end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = self._chunked_body(body_start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < body_start + length:
                return None
            body = bytes(self.buffer[body_start : body_start + length])
            consumed = body_start + length

        del self.buffer[:consumed]
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and version == "HTTP/1.1"
        return method, target.split("?", 1)[0], body, keep_alive

    def _chunked_body(self, offset: int) -> tuple[bytes, int] | None:
        parts = []
        while True:
            line_end = self.buffer.find(b"\r\n", offset)
            if line_end < 0:
                return None
            size = int(bytes(self.buffer[offset:line_end]).split(b";")[0], 16)
            data_start = line_end + 2
            if size == 0:
                # The body ends with an empty trailer section.
                trailer_end = self.buffer.find(b"\r\n", data_start)
                if trailer_end < 0:
                    return None
                return b"".join(parts), trailer_end + 2
            if len(self.buffer) < data_start + size + 2:
                return None
            parts.append(bytes(self.buffer[data_start : data_start + size]))
            offset = data_start + size + 2


def wants_stream(body: bytes, default: bool) -> bool:
    match = STREAM_FLAG.search(body)
    if match is None:
        return default
    return match.group(1) == b"true"


def echo_response(body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    content = f"sha256={digest} length={len(body)}"
    return fixed_response(200, "application/json", _chat_completion(content))


class UpstreamProtocol(asyncio.Protocol):
    """One client connection, which serves its requests one at a time, in order."""

    def __init__(self) -> None:
        self.parser = RequestParser()
        self.transport: asyncio.Transport | None = None
        self.streaming = False
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        if not self.streaming:
            self.serve_buffered()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def serve_buffered(self) -> None:
        while self.transport is not None and not self.streaming:
            try:
                request = self.parser.next_request()
            except ValueError:
                self.transport.close()
                return
            if request is None:
                return
            method, path, body, keep_alive = request
            self.close_after = not keep_alive
            self.dispatch(method, path, body)
            if self.close_after and not self.streaming:
                self.transport.close()

    def dispatch(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        slow = path.startswith("/slow/")
        route = path[len("/slow") :] if slow else path

        if path.startswith("/echo/"):
            self.transport.write(echo_response(body))
        elif route == "/v1/chat/completions":
            if wants_stream(body, default=False):
                usage = INCLUDE_USAGE.search(body) is not None
                self.stream(SSE_FAST_BODY[usage], slow)
            else:
                self.transport.write(CHAT_RESPONSE)
        elif route == "/api/chat":
            if wants_stream(body, default=True):
                self.stream(NDJSON_FAST_BODY, slow)
            else:
                self.transport.write(NDJSON_SINGLE_RESPONSE)
        elif method == "GET" and path in ("/", "/v1/models"):
            self.transport.write(MODELS_RESPONSE)
        else:
            self.transport.write(NOT_FOUND)

    def stream(self, pieces: list[bytes], slow: bool) -> None:
        if not slow:
            # Separate writes reach the socket as separate segments (TCP_NODELAY),
            # so the proxy receives events one by one, as from a fast model.
            assert self.transport is not None
            for piece in pieces:
                self.transport.write(piece)
            return
        self.streaming = True
        asyncio.get_running_loop().create_task(self.stream_slowly(pieces))

    async def stream_slowly(self, pieces: list[bytes]) -> None:
        # The head and first event go out at once. Each later content event waits
        # SLOW_GAP_S, and the closing pieces follow the last one directly.
        for index, piece in enumerate(pieces):
            if self.transport is None:
                return
            if 0 < index < EVENT_COUNT:
                await asyncio.sleep(SLOW_GAP_S)
            self.transport.write(piece)
        self.streaming = False
        if self.close_after and self.transport is not None:
            self.transport.close()
            return
        self.serve_buffered()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=1024)
    bound_port = server.sockets[0].getsockname()[1]
    print(f"listening on {bound_port}", flush=True)

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument(
        "--port", type=int, default=0, help="Port to listen on; 0 picks a free one."
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    run_fast(serve(args.host, args.port))


def run_fast(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


if __name__ == "__main__":
    main()
