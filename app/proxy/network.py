"""An httpcore network backend on asyncio transports, for the upstream pool.

httpcore's default backend wraps anyio streams, and three of its costs showed
at the top of the proxy's profile. Each write is its own send system call, so
a request's head and body leave in two. Before every request the pool checks
the socket of each idle connection for readability, through a typed attribute
lookup and a poll system call. Every read that has to wait resumes and then
pauses the transport, and every read and write opens a cancel scope for its
timeout.

Here each connection has a protocol that buffers the bytes it receives and
records end of file and errors when they happen, so readability is a look at
that state. Writes wait in a list and leave in one system call when httpcore
starts to read the response, or at once when they add up to FLUSH_BYTES.
Read and write timeouts are timer callbacks on a future, so they need no
cancellation.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any, cast

import httpcore

# Pending request bytes that are written at once instead of waiting for the
# first read. Past this size a second system call costs little next to sending
# the bytes themselves.
FLUSH_BYTES = 64 * 1024
# Received bytes held before the transport stops reading from the socket, so
# that a client slower than its upstream leaves the rest in the kernel.
READ_PAUSE_BYTES = 256 * 1024


class StreamProtocol(asyncio.Protocol):
    """Receive state of one upstream connection, with how its stream ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.at_eof = False
        self.lost = False
        self.error: Exception | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[bool] | None = None
        self.drain_waiter: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > READ_PAUSE_BYTES and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        wake(self.read_waiter)

    def eof_received(self) -> None:
        # Returning None lets the transport close itself, because the upstream
        # sends nothing more and httpcore does not reuse a half-closed connection.
        self.at_eof = True
        wake(self.read_waiter)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.error = exc
        wake(self.read_waiter)
        wake(self.drain_waiter)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        wake(self.drain_waiter)

    def is_readable(self) -> bool:
        """Return whether a read would return at once, with bytes or the end."""
        return bool(self.chunks) or self.at_eof or self.lost

    def take(self, max_bytes: int) -> bytes:
        """Remove and return up to `max_bytes` bytes from a non-empty buffer."""
        chunks = self.chunks
        data = chunks.popleft()
        if len(data) > max_bytes:
            chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        elif chunks and len(data) + len(chunks[0]) <= max_bytes:
            data = self.join_more(data, max_bytes)

        self.buffered -= len(data)
        if self.reading_paused and self.buffered <= READ_PAUSE_BYTES // 2:
            assert self.transport is not None
            self.reading_paused = False
            self.transport.resume_reading()
        return data

    def join_more(self, first: bytes, max_bytes: int) -> bytes:
        parts = [first]
        size = len(first)
        chunks = self.chunks
        while chunks and size + len(chunks[0]) <= max_bytes:
            part = chunks.popleft()
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    async def wait_readable(self, timeout: float | None) -> bool:
        """Wait for bytes, the end of the stream or an error.

        Returns False when `timeout` seconds pass first.
        """
        assert self.read_waiter is None, "two reads at once on one connection"
        waiter = self.read_waiter = self.loop.create_future()
        try:
            return await wait_with_timeout(self.loop, waiter, timeout)
        finally:
            self.read_waiter = None

    async def wait_drained(self, timeout: float | None) -> bool:
        """Wait until the transport takes writes again.

        Returns False when `timeout` seconds pass first.
        """
        waiter = self.drain_waiter = self.loop.create_future()
        try:
            return await wait_with_timeout(self.loop, waiter, timeout)
        finally:
            self.drain_waiter = None


def wake(waiter: asyncio.Future[bool] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(True)


def expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def wait_with_timeout(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], timeout: float | None
) -> bool:
    if timeout is None:
        return await waiter
    timer = loop.call_later(timeout, expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


class TransportStream(httpcore.AsyncNetworkStream):
    """One upstream connection, plain or TLS, as httpcore's network stream."""

    def __init__(self, transport: asyncio.Transport, protocol: StreamProtocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.pending:
            self.flush()
        protocol = self.protocol
        if not protocol.chunks:
            if not protocol.is_readable():
                if not await protocol.wait_readable(timeout):
                    raise httpcore.ReadTimeout(
                        f"reading from the upstream timed out after {timeout:g}s"
                    )
            if not protocol.chunks:
                return self.end_of_stream()
        return protocol.take(max_bytes)

    def end_of_stream(self) -> bytes:
        """Return b"" at a clean end of file, or raise why the stream ended."""
        protocol = self.protocol
        if protocol.error is not None:
            raise httpcore.ReadError(describe(protocol.error))
        if self.closed:
            raise httpcore.ReadError("the connection was closed by the proxy")
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self.closed or self.protocol.lost or self.transport.is_closing():
            error = self.protocol.error
            reason = describe(error) if error else "the connection is closed"
            raise httpcore.WriteError(reason)

        self.pending.append(buffer)
        self.pending_bytes += len(buffer)
        if self.pending_bytes < FLUSH_BYTES:
            return
        self.flush()
        if self.protocol.writing_paused:
            await self.drain(timeout)

    def flush(self) -> None:
        pending = self.pending
        self.pending = []
        self.pending_bytes = 0
        # uvloop 0.23 raises RuntimeError on a write to a closed transport, so the
        # bytes are dropped instead and the read that follows reports the end.
        if self.transport.is_closing():
            return

        if len(pending) == 1:
            self.transport.write(pending[0])
        else:
            # uvloop 0.23 sends a list with one writev call, and asyncio's
            # transports in Python 3.11 join it into one write.
            self.transport.writelines(pending)

    async def drain(self, timeout: float | None) -> None:
        protocol = self.protocol
        while protocol.writing_paused and not protocol.lost:
            if not await protocol.wait_drained(timeout):
                raise httpcore.WriteTimeout(
                    f"writing to the upstream timed out after {timeout:g}s"
                )
        if protocol.lost:
            error = protocol.error
            reason = describe(error) if error else "the connection was lost"
            raise httpcore.WriteError(reason)

    async def aclose(self) -> None:
        # abort() closes the socket now and drops unsent bytes, as anyio 4's
        # stream does. close() would wait without bound for a stalled upstream.
        self.closed = True
        self.pending = []
        self.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = self.protocol.loop
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self.transport,
                    self.protocol,
                    ssl_context,
                    server_hostname=server_hostname,
                )
        except TimeoutError:
            self.transport.abort()
            raise httpcore.ConnectTimeout(
                f"TLS handshake with the upstream timed out after {timeout:g}s"
            ) from None
        except OSError as error:
            self.transport.abort()
            raise httpcore.ConnectError(describe(error)) from error

        if transport is None:
            raise httpcore.ConnectError("the event loop returned no TLS transport")
        self.protocol.transport = transport
        return TransportStream(transport, self.protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return self.protocol.is_readable()
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        if info in ("ssl_object", "socket"):
            return self.transport.get_extra_info(info)
        return None


class TransportBackend(httpcore.AsyncNetworkBackend):
    """Network backend that opens TransportStreams on the running event loop.

    It connects over TCP only, because the upstream pool never sets `uds`.
    """

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        connection = loop.create_connection(
            lambda: StreamProtocol(loop), host, port, local_addr=local
        )
        transport, protocol = await self.wait_connected(connection, timeout)

        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return TransportStream(transport, protocol)

    async def wait_connected(
        self,
        connection: Awaitable[tuple[asyncio.Transport, StreamProtocol]],
        timeout: float | None,
    ) -> tuple[asyncio.Transport, StreamProtocol]:
        # TimeoutError is an OSError, so it is caught first. An unanswered
        # connect is a timeout, and a refusal or a failed lookup is an error.
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await connection
        except TimeoutError:
            raise httpcore.ConnectTimeout(
                f"connecting to the upstream timed out after {timeout:g}s"
            ) from None
        except OSError as error:
            raise httpcore.ConnectError(describe(error)) from error
        return transport, protocol

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
