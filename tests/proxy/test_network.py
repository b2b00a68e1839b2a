"""The upstream pool's network backend against the scripted upstream.

Every test runs on asyncio's own event loop and on uvloop, which the proxy
uses, because the two loops' transports differ in how they write lists,
pause reading and start TLS.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpcore
import pytest
import uvloop

from app.proxy.network import (
    READ_PAUSE_BYTES,
    StreamProtocol,
    TransportBackend,
    TransportStream,
)
from tests.support.appliance import free_port
from tests.support.upstream import (
    Script,
    ScriptedUpstream,
    close,
    reset,
    send,
    sleep,
)

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
TEXT = [("Content-Type", "text/plain")]
# Time allowed for bytes on loopback to reach the other side on a busy machine.
# The pauses in the scripts are several times longer.
PROMPT_S = 0.03
PAUSE_MS = 150


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner:
    if request.param == "uvloop":
        return uvloop.run
    return asyncio.run


def unique_path() -> str:
    return f"/net-{uuid.uuid4().hex[:10]}"


def pool(**options: Any) -> httpcore.AsyncConnectionPool:
    return httpcore.AsyncConnectionPool(network_backend=TransportBackend(), **options)


async def fetch(
    connections: httpcore.AsyncConnectionPool,
    url: str,
    body: bytes = b"{}",
    read_timeout_s: float | None = None,
) -> tuple[int, list[tuple[float, bytes]]]:
    """Send a POST and return the status and each chunk with its arrival time."""
    started = time.monotonic()
    extensions = {"timeout": {"read": read_timeout_s}}
    chunks: list[tuple[float, bytes]] = []
    async with connections.stream(
        "POST", url, content=body, extensions=extensions
    ) as response:
        async for chunk in response.aiter_stream():
            chunks.append((time.monotonic() - started, chunk))
    return response.status, chunks


def test_chunks_arrive_as_written(run: Runner, upstream: ScriptedUpstream) -> None:
    path = unique_path()
    steps = [send(b"one\n"), sleep(PAUSE_MS), send(b"two\n")]
    upstream.route("POST", path, Script(headers=TEXT, steps=steps))

    async def scenario() -> tuple[int, list[tuple[float, bytes]]]:
        async with pool() as connections:
            return await fetch(connections, upstream.url + path)

    status, chunks = run(scenario())

    assert status == 200
    assert [chunk for _, chunk in chunks] == [b"one\n", b"two\n"]
    assert chunks[0][0] < PAUSE_MS / 1000
    assert chunks[1][0] - chunks[0][0] >= (PAUSE_MS - 20) / 1000


def test_connection_reused(run: Runner, upstream: ScriptedUpstream) -> None:
    path = unique_path()
    upstream.route("POST", path, Script(headers=TEXT, steps=[send(b"ok")]))

    async def scenario() -> None:
        async with pool() as connections:
            for _ in range(3):
                await fetch(connections, upstream.url + path)

    run(scenario())
    seen = upstream.requests_for(path)

    assert len(seen) == 3
    assert len({request.connection for request in seen}) == 1


def test_request_bytes_wait_for_read(run: Runner, upstream: ScriptedUpstream) -> None:
    """The head and the body stay in the stream until the response is read."""
    path = unique_path()
    upstream.route("POST", path, Script(echo=True))
    body = b'{"model":"m"}'
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    host, port = upstream.url.removeprefix("http://").split(":")

    async def scenario() -> tuple[int, bytes]:
        stream = await TransportBackend().connect_tcp(host, int(port), timeout=5)
        await stream.write(head)
        await stream.write(body)
        await asyncio.sleep(PROMPT_S * 3)
        seen_before_read = len(upstream.requests_for(path))
        reply = await stream.read(65536, timeout=5)
        await stream.aclose()
        return seen_before_read, reply

    seen_before_read, reply = run(scenario())
    seen = upstream.requests_for(path)

    assert seen_before_read == 0
    assert reply.startswith(b"HTTP/1.1 200")
    assert len(seen) == 1
    assert seen[0].body == body


def test_large_body_arrives_whole(run: Runner, upstream: ScriptedUpstream) -> None:
    path = unique_path()
    upstream.route("POST", path, Script(echo=True))
    body = bytes(range(256)) * 20_000

    async def scenario() -> bytes:
        async with pool() as connections:
            _, chunks = await fetch(connections, upstream.url + path, body=body)
        return b"".join(chunk for _, chunk in chunks)

    echoed = json.loads(run(scenario()))

    assert echoed["body_length"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_closed_idle_connection_replaced(
    run: Runner, upstream: ScriptedUpstream
) -> None:
    """An idle connection that the upstream closed is not used again."""
    path = unique_path()
    script = Script(headers=TEXT, steps=[send(b"done"), close()], chunked=False)
    upstream.route("POST", path, script)

    async def scenario() -> list[int]:
        statuses = []
        async with pool() as connections:
            for _ in range(2):
                status, _ = await fetch(connections, upstream.url + path)
                statuses.append(status)
                await asyncio.sleep(PROMPT_S)
        return statuses

    statuses = run(scenario())
    seen = upstream.requests_for(path)

    assert statuses == [200, 200]
    assert len({request.connection for request in seen}) == 2


@pytest.mark.parametrize(
    ("end", "error"),
    [(close(), httpcore.RemoteProtocolError), (reset(), httpcore.ReadError)],
    ids=["fin", "rst"],
)
def test_cut_body_raises(
    run: Runner,
    upstream: ScriptedUpstream,
    end: Any,
    error: type[Exception],
) -> None:
    """Bytes before a FIN or RST arrive, then the cut raises."""
    path = unique_path()
    upstream.route("POST", path, Script(headers=TEXT, steps=[send(b"part"), end]))
    received: list[bytes] = []

    async def scenario() -> None:
        async with pool() as connections:
            async with connections.stream("POST", upstream.url + path) as response:
                async for chunk in response.aiter_stream():
                    received.append(chunk)

    with pytest.raises(error):
        run(scenario())

    assert received == [b"part"]


def test_read_timeout_closes_connection(
    run: Runner, upstream: ScriptedUpstream
) -> None:
    path = unique_path()
    upstream.route("POST", path, Script(hang=True))
    timeout_s = 0.2

    async def scenario() -> float:
        started = time.monotonic()
        async with pool() as connections:
            with pytest.raises(httpcore.ReadTimeout):
                await fetch(connections, upstream.url + path, read_timeout_s=timeout_s)
            return time.monotonic() - started

    elapsed = run(scenario())
    seen = upstream.wait_request(path, timeout_s=1)

    assert timeout_s <= elapsed < timeout_s + 1
    assert seen is not None
    assert upstream.wait_closed(seen, timeout_s=1) is not None


def test_cancelled_read_closes_connection(
    run: Runner, upstream: ScriptedUpstream
) -> None:
    """A request whose task is cancelled mid-stream closes its connection."""
    path = unique_path()
    steps = [send(b"first"), sleep(10_000)]
    upstream.route("POST", path, Script(headers=TEXT, steps=steps))

    async def scenario() -> None:
        async with pool() as connections:
            task = asyncio.ensure_future(fetch(connections, upstream.url + path))
            await asyncio.sleep(PROMPT_S * 3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())
    seen = upstream.wait_request(path, timeout_s=1)

    assert seen is not None
    assert upstream.wait_closed(seen, timeout_s=1) is not None


def test_refused_connect_raises(run: Runner) -> None:
    port = free_port()

    async def scenario() -> None:
        await TransportBackend().connect_tcp("127.0.0.1", port, timeout=5)

    # asyncio and uvloop word the refusal differently but both give its errno.
    with pytest.raises(httpcore.ConnectError, match=f"Errno {errno.ECONNREFUSED}\\]"):
        run(scenario())


def test_read_after_peer_closed(run: Runner) -> None:
    """Bytes still pending when the upstream closes are dropped, and the read ends."""

    async def scenario() -> bytes:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            stream = await TransportBackend().connect_tcp("127.0.0.1", port, timeout=5)
            await stream.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            accepted, _ = listener.accept()
            accepted.close()
            await asyncio.sleep(PROMPT_S * 3)

            reply = await stream.read(65536, timeout=5)
            await stream.aclose()
        return reply

    assert run(scenario()) == b""


def test_reading_pauses_when_buffer_full(
    run: Runner, upstream: ScriptedUpstream
) -> None:
    """A reader that falls behind leaves the excess in the kernel, not in memory."""
    path = unique_path()
    block = b"x" * 65536
    steps = [send(block) for _ in range(64)]
    upstream.route("POST", path, Script(headers=TEXT, steps=steps))

    async def scenario() -> tuple[int, int]:
        async with pool() as connections:
            async with connections.stream("POST", upstream.url + path) as response:
                stream = response.extensions["network_stream"]
                assert isinstance(stream, TransportStream)
                iterator = response.aiter_stream()
                total = len(await anext(iterator))
                await asyncio.sleep(PAUSE_MS / 1000)
                buffered_while_paused = stream.protocol.buffered
                async for chunk in iterator:
                    total += len(chunk)
        return buffered_while_paused, total

    buffered_while_paused, total = run(scenario())

    # One read of the transport may land after the pause threshold is passed.
    assert buffered_while_paused <= READ_PAUSE_BYTES + 256 * 1024
    assert total == len(block) * 64


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Return a fresh self-signed certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed to make a test certificate"
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


TLS_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure"


async def serve_tls_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(TLS_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def tls_server(cert: Path, key: Path) -> asyncio.Server:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return await asyncio.start_server(serve_tls_client, "127.0.0.1", 0, ssl=context)


def test_tls_exchange_reuses_connection(
    run: Runner, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    trusted = ssl.create_default_context(cafile=str(cert))

    async def scenario() -> tuple[list[bytes], int, bool]:
        server = await tls_server(cert, key)
        port = server.sockets[0].getsockname()[1]
        bodies = []
        async with pool(ssl_context=trusted) as connections:
            for _ in range(2):
                response = await connections.request(
                    "GET", f"https://127.0.0.1:{port}/"
                )
                bodies.append(response.content)
            stream = response.extensions["network_stream"]
            encrypted = stream.get_extra_info("ssl_object") is not None
            count = len(connections.connections)
        server.close()
        await server.wait_closed()
        return bodies, count, encrypted

    bodies, count, encrypted = run(scenario())

    assert bodies == [b"secure", b"secure"]
    assert count == 1
    assert encrypted


def test_untrusted_certificate_raises(
    run: Runner, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate

    async def scenario() -> None:
        server = await tls_server(cert, key)
        port = server.sockets[0].getsockname()[1]
        try:
            async with pool() as connections:
                await connections.request("GET", f"https://127.0.0.1:{port}/")
        finally:
            server.close()
            await server.wait_closed()

    with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        run(scenario())


def test_stalled_handshake_times_out(run: Runner, upstream: ScriptedUpstream) -> None:
    """A plain HTTP server never replies to a TLS ClientHello, so connect times out."""
    https_url = upstream.url.replace("http://", "https://") + unique_path()
    timeout_s = 0.3

    async def scenario() -> float:
        started = time.monotonic()
        extensions = {"timeout": {"connect": timeout_s}}
        async with pool() as connections:
            with pytest.raises(httpcore.ConnectTimeout):
                await connections.request("GET", https_url, extensions=extensions)
        return time.monotonic() - started

    elapsed = run(scenario())

    assert timeout_s <= elapsed < timeout_s + 1


@pytest.fixture
def protocol_only() -> Iterator[StreamProtocol]:
    loop = asyncio.new_event_loop()
    yield StreamProtocol(loop)
    loop.close()


@pytest.mark.parametrize(
    "event",
    [
        lambda protocol: protocol.data_received(b"HTTP/1.1 408"),
        lambda protocol: protocol.eof_received(),
        lambda protocol: protocol.connection_lost(ConnectionResetError()),
    ],
    ids=["bytes", "fin", "rst"],
)
def test_idle_connection_readable(
    protocol_only: StreamProtocol, event: Callable[[StreamProtocol], None]
) -> None:
    """The pool's idle check detects bytes, FIN or RST that came while idle."""
    readable_before = protocol_only.is_readable()

    event(protocol_only)

    assert not readable_before
    assert protocol_only.is_readable()
