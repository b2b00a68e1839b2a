"""A scripted HTTP/1.1 upstream for tests, written on raw asyncio streams.

The server plays the model server behind the proxy. Each response follows a
`Script`: a status, headers and a list of steps that write chunks, pause, end
the body, close the connection (FIN) or reset it (RST). Because it sits on
plain sockets with TCP_NODELAY and flushes after every step, the chunk
boundaries, pauses and connection ends on the wire are the ones the script
names. It runs in its own thread with its own event loop, so synchronous tests
can use it next to blocking clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 65_536
READ_SIZE = 65_536
# Before an RST the kernel send queue is drained first, so the peer reads every
# byte the script wrote before it receives the reset. This bounds that wait.
RESET_DRAIN_TIMEOUT_S = 1.0
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Step:
    """One action of a response script, built by the helpers below."""

    kind: str
    data: bytes = b""
    ms: float = 0.0


def send(data: bytes) -> Step:
    """Build a step that writes `data` as one HTTP chunk and flushes it.

    With `Script(chunked=False)` the bytes are written without chunk framing.
    """
    if not data:
        raise ValueError(
            "send() requires at least one byte because a zero-length chunk ends "
            "the body. Use end() to end it."
        )
    return Step("send", data=bytes(data))


def sleep(ms: float) -> Step:
    """Build a step that pauses for `ms` milliseconds."""
    return Step("sleep", ms=float(ms))


def close() -> Step:
    """Build a step that closes the connection (FIN) without the last chunk."""
    return Step("close")


def reset() -> Step:
    """Build a step that resets the connection (RST) after a flush."""
    return Step("reset")


def end() -> Step:
    """Build a step that writes the zero-length chunk, ending the body."""
    return Step("end")


def raw(data: bytes) -> Step:
    """Build a step that writes `data` verbatim, with no chunk framing."""
    return Step("raw", data=bytes(data))


@dataclass
class Script:
    """The response the upstream sends to one request.

    A script whose steps run out without `end()`, `close()` or `reset()` ends
    cleanly as if `end()` came last. With `chunked=False` the Content-Length
    is the sum of the `send()` and `raw()` bytes unless `headers` set one.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    delay_ms: float = 0
    chunked: bool = True
    hang: bool = False
    echo: bool = False


@dataclass
class SeenRequest:
    """A request as the upstream received it.

    `received_at` is the `time.monotonic()` value when the whole request,
    body included, had arrived. `closed_at` is when the upstream saw EOF or
    RST from the peer on that connection, and stays None when the upstream
    closed the connection itself. A half-close (shutdown of the peer's write
    side) counts as the peer leaving and stops the running script.
    """

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    received_at: float
    closed_at: float | None = None
    connection: int = 0
    http_version: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        """The request target without its query."""
        return _path_of(self.target)

    def header(self, name: str) -> str | None:
        """Return the first value of header `name` (any case), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


RouteScript = Script | Callable[[SeenRequest], Script]

NOT_FOUND = Script(
    status=404,
    headers=[("Content-Type", "application/json")],
    steps=[
        send(
            b'{"error":{"message":"no script is routed for this request",'
            b'"type":"not_found"}}'
        )
    ],
    chunked=False,
)


class ScriptedUpstream:
    """An HTTP/1.1 server on 127.0.0.1 that replies to requests with scripts."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[SeenRequest] = []
        self.errors: list[str] = []
        self._routes: dict[tuple[str, str], RouteScript] = {}
        self._default: RouteScript = NOT_FOUND
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connection_count = 0

    def start(self) -> ScriptedUpstream:
        """Start the server thread and return once the port is listening."""
        if self._thread is not None:
            raise RuntimeError("the scripted upstream is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="scripted-upstream", daemon=True
        )
        self._thread.start()

        if not ready.wait(STOP_TIMEOUT_S) or self._server is None:
            raise RuntimeError("the scripted upstream failed to start listening")
        return self

    def stop(self) -> None:
        """Close every connection, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(TimeoutError):
            future.result(STOP_TIMEOUT_S)

        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> ScriptedUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def route(self, method: str, path: str, script: RouteScript) -> None:
        """Reply to `method` requests for `path` (no query) with `script`.

        The method "*" matches any method, but a route with the exact method
        takes precedence.
        A callable receives the request and returns the script to play.
        """
        with self._lock:
            self._routes[(method.upper(), path)] = script

    def default(self, script: RouteScript) -> None:
        """Set the script for requests that match no route."""
        with self._lock:
            self._default = script

    def requests_for(self, path: str) -> list[SeenRequest]:
        """Return the requests seen for `path` (no query), oldest first."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def wait_request(self, path: str, timeout_s: float) -> SeenRequest | None:
        """Return the first request for `path`, waiting up to `timeout_s`.

        Returns None when no such request arrived in time.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._first_for(path), timeout_s)
            return self._first_for(path)

    def wait_closed(self, request: SeenRequest, timeout_s: float) -> float | None:
        """Wait until the peer closed the request's connection.

        Returns the seconds from `received_at` to `closed_at`, or None when
        the connection was still open after `timeout_s`.
        """
        with self._changed:
            self._changed.wait_for(lambda: request.closed_at is not None, timeout_s)
            if request.closed_at is None:
                return None
            return request.closed_at - request.received_at

    def _first_for(self, path: str) -> SeenRequest | None:
        for request in self.requests:
            if request.path == path:
                return request
        return None

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0)
            )
            port = self._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            ready.set()
            loop.run_forever()
        finally:
            ready.set()
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connection_count += 1
            number = self._connection_count

        connection = _Connection(self, number, reader, writer)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            connection.abort()
        except Exception as error:
            self._note_error(f"connection {number} failed: {error!r}")
            connection.abort()
        finally:
            self._tasks.discard(task)
            await connection.dispose()

    def _record(self, request: SeenRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _mark_closed(self, requests: list[SeenRequest], at: float) -> None:
        with self._changed:
            for request in requests:
                if request.closed_at is None:
                    request.closed_at = at
            self._changed.notify_all()

    def _note_error(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _script_for(self, request: SeenRequest) -> Script:
        with self._lock:
            chosen = self._routes.get((request.method.upper(), request.path))
            if chosen is None:
                chosen = self._routes.get(("*", request.path), self._default)
        if isinstance(chosen, Script):
            return chosen
        return chosen(request)


class _PeerGone(Exception):
    """The peer closed or reset the connection."""


class _Connection:
    """One accepted TCP connection, serving requests until it ends."""

    def __init__(
        self,
        upstream: ScriptedUpstream,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.upstream = upstream
        self.number = number
        self.reader = reader
        self.writer = writer
        self.inbox = bytearray()
        self.position = 0
        self.arrived = asyncio.Event()
        self.peer_gone = asyncio.Event()
        self.seen: list[SeenRequest] = []
        self.pump: asyncio.Task[None] | None = None
        self.closing_self = False

    async def serve(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # With no write buffer allowance, drain() returns only once every byte
        # is in the kernel, so each step really is flushed before the next.
        self.writer.transport.set_write_buffer_limits(high=0)
        # A reader that runs all the time notices the peer leaving even while
        # a script sleeps, which is what `closed_at` measures.
        self.pump = asyncio.create_task(self._pump())

        keep_open = True
        while keep_open:
            try:
                request = await self._read_request()
            except _PeerGone:
                return
            if request is None:
                return
            keep_open = await self._respond(request)

    def abort(self) -> None:
        self.closing_self = True
        self.writer.transport.abort()

    async def dispose(self) -> None:
        """Close the connection gracefully unless it is closed already."""
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump

        self.closing_self = True
        if not self.writer.transport.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), STOP_TIMEOUT_S)

    async def _pump(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                self.inbox += data
                self.arrived.set()
        except (ConnectionError, OSError):
            pass
        self.peer_gone.set()
        self.arrived.set()
        if not self.closing_self:
            self.upstream._mark_closed(self.seen, time.monotonic())

    async def _take_until(self, marker: bytes, limit: int) -> bytes:
        while True:
            found = self.inbox.find(marker, self.position)
            if found >= 0:
                end = found + len(marker)
                return self._consume(end - self.position)
            if len(self.inbox) - self.position > limit:
                raise ValueError(f"no {marker!r} within {limit} bytes")
            await self._wait_for_data()

    async def _take_exactly(self, size: int) -> bytes:
        while len(self.inbox) - self.position < size:
            await self._wait_for_data()
        return self._consume(size)

    async def _wait_for_data(self) -> None:
        if self.peer_gone.is_set():
            raise _PeerGone
        self.arrived.clear()
        await self.arrived.wait()

    def _consume(self, size: int) -> bytes:
        data = bytes(self.inbox[self.position : self.position + size])
        self.position += size
        # Compacting only now and then keeps large chunked bodies linear.
        if self.position > READ_SIZE and self.position * 2 > len(self.inbox):
            del self.inbox[: self.position]
            self.position = 0
        return data

    async def _read_request(self) -> SeenRequest | None:
        if self.peer_gone.is_set() and self.position == len(self.inbox):
            return None
        head = await self._take_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        method, target, version, headers = _parse_head(head)

        if _header(headers, "expect").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await self.writer.drain()
        body = await self._read_body(headers)

        request = SeenRequest(
            method=method,
            target=target,
            headers=headers,
            body=body,
            received_at=time.monotonic(),
            connection=self.number,
            http_version=version,
        )
        self.seen.append(request)
        self.upstream._record(request)
        return request

    async def _read_body(self, headers: list[tuple[str, str]]) -> bytes:
        if "chunked" in _header(headers, "transfer-encoding").lower():
            return await self._read_chunked_body()
        length = _header(headers, "content-length")
        if length:
            return await self._take_exactly(int(length))
        return b""

    async def _read_chunked_body(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_line = await self._take_until(b"\r\n", MAX_HEAD_BYTES)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            parts.append(await self._take_exactly(size))
            await self._take_exactly(2)

        # Trailer fields end with an empty line, like the head.
        while await self._take_until(b"\r\n", MAX_HEAD_BYTES) != b"\r\n":
            pass
        return b"".join(parts)

    async def _respond(self, request: SeenRequest) -> bool:
        try:
            script = self.upstream._script_for(request)
        except Exception as error:
            # A broken callable is a bug in the test, so it gets a 500 and a note.
            self.upstream._note_error(f"script for {request.target} failed: {error!r}")
            script = _error_script(error)
        try:
            return await _Player(self, request, script).play()
        except (_PeerGone, ConnectionError, OSError):
            return False

    def write(self, data: bytes) -> None:
        if self.peer_gone.is_set():
            raise _PeerGone
        self.writer.write(data)

    async def flush(self) -> None:
        await self.writer.drain()

    async def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        await self.flush()
        await _wait_send_queue_empty(sock)

        # Linger on with a zero timeout makes close() send RST, not FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.abort()


class _Player:
    """Plays one script as the response to one request."""

    def __init__(
        self, connection: _Connection, request: SeenRequest, script: Script
    ) -> None:
        self.connection = connection
        self.request = request
        self.script = script
        self.is_head = request.method.upper() == "HEAD"

    async def play(self) -> bool:
        if self.script.hang:
            await self.connection.peer_gone.wait()
            return False
        if self.script.delay_ms:
            await asyncio.sleep(self.script.delay_ms / 1000)
        if self.script.echo:
            return await self._play_echo()

        headers = self._framed_headers()
        self.connection.write(_status_line(self.script.status) + _head(headers))
        await self.connection.flush()
        return await self._play_steps() and self._keep_alive(headers)

    async def _play_echo(self) -> bool:
        body = json.dumps(_echo_document(self.request)).encode()
        headers = [("Content-Type", "application/json"), *self.script.headers]
        headers.append(("Content-Length", str(len(body))))

        self.connection.write(_status_line(self.script.status) + _head(headers))
        if not self.is_head:
            self.connection.write(body)
        await self.connection.flush()
        return self._keep_alive(headers)

    def _framed_headers(self) -> list[tuple[str, str]]:
        headers = list(self.script.headers)
        if _has_body_framing(headers) or _status_has_no_body(self.script.status):
            return headers
        if self.script.chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            length = sum(len(s.data) for s in self.script.steps if s.data)
            headers.append(("Content-Length", str(length)))
        return headers

    async def _play_steps(self) -> bool:
        for step in self.script.steps:
            if step.kind == "sleep":
                await asyncio.sleep(step.ms / 1000)
            elif step.kind in ("send", "raw"):
                await self._write_body(step)
            elif step.kind == "end":
                return await self._finish()
            elif step.kind == "close":
                await self.connection.flush()
                self.connection.closing_self = True
                self.connection.writer.close()
                return False
            elif step.kind == "reset":
                await self.connection.reset()
                return False
            else:
                raise ValueError(f"unknown script step kind {step.kind!r}")
        return await self._finish()

    async def _write_body(self, step: Step) -> None:
        if self.is_head:
            return
        if step.kind == "send" and self.script.chunked:
            size = f"{len(step.data):x}\r\n".encode()
            self.connection.write(size + step.data + b"\r\n")
        else:
            self.connection.write(step.data)
        await self.connection.flush()

    async def _finish(self) -> bool:
        framed = _framing(self.script.headers)
        chunked = framed == "chunked" or (framed is None and self.script.chunked)
        if chunked and not self.is_head and not _status_has_no_body(self.script.status):
            self.connection.write(b"0\r\n\r\n")
        await self.connection.flush()
        return True

    def _keep_alive(self, response_headers: list[tuple[str, str]]) -> bool:
        asked = _header(self.request.headers, "connection").lower()
        answered = _header(response_headers, "connection").lower()
        if "close" in asked or "close" in answered:
            return False
        return self.request.http_version != "HTTP/1.0" or "keep-alive" in asked


def _parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return method, target, version, headers


def _path_of(target: str) -> str:
    if target.startswith(("http://", "https://")):
        return urlsplit(target).path or "/"
    return target.split("?", 1)[0]


def _header(headers: list[tuple[str, str]], name: str) -> str:
    for key, value in headers:
        if key.lower() == name:
            return value
    return ""


def _framing(headers: list[tuple[str, str]]) -> str | None:
    if "chunked" in _header(headers, "transfer-encoding").lower():
        return "chunked"
    if _header(headers, "content-length"):
        return "length"
    return None


def _has_body_framing(headers: list[tuple[str, str]]) -> bool:
    return _framing(headers) is not None


def _status_has_no_body(status: int) -> bool:
    return 100 <= status < 200 or status in (204, 304)


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def _head(headers: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (lines + "\r\n").encode("latin-1")


def _echo_document(request: SeenRequest) -> dict[str, object]:
    return {
        "method": request.method,
        "target": request.target,
        "headers": [[name, value] for name, value in request.headers],
        "body_sha256": hashlib.sha256(request.body).hexdigest(),
        "body_length": len(request.body),
    }


def _error_script(error: Exception) -> Script:
    message = f"the test's script callable raised {error!r}"
    body = json.dumps({"error": {"message": message, "type": "script_error"}})
    return Script(
        status=500,
        headers=[("Content-Type", "application/json")],
        steps=[send(body.encode())],
        chunked=False,
    )


async def _wait_send_queue_empty(sock: socket.socket) -> None:
    deadline = time.monotonic() + RESET_DRAIN_TIMEOUT_S
    buffer = bytearray(4)
    while time.monotonic() < deadline:
        # TIOCOUTQ (SIOCOUTQ on sockets) counts bytes not yet acknowledged.
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buffer)
        if struct.unpack("i", buffer)[0] == 0:
            return
        await asyncio.sleep(0.005)
