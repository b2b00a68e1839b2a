"""The logging proxy: a raw ASGI application on the hot path.

Every request goes to its target origin with its own path and query; the
upstream's status, headers and body bytes come back to the client as they
arrive. The handler only notes what it saw in an Exchange and hands it to the
recorder when the exchange ends, so the client never waits for parsing or for
the database. FastAPI serves only the proxy's own routes under /_llmtap/.
"""

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import httpcore

from app.proxy import errors
from app.proxy.exchange import (
    END_CLIENT_DISCONNECTED,
    END_IDLE_TIMEOUT,
    END_PROXY_ERROR,
    END_UPSTREAM_CLOSED,
    END_UPSTREAM_RESET,
    Exchange,
)
from app.proxy.forwarding import (
    request_headers_for_upstream,
    response_headers_for_client,
)
from app.proxy.pump import BodyPump
from app.proxy.targets import TargetPolicy
from app.proxy.upstream import Upstream
from app.proxy.usage import UsageChunkFilter, inject_include_usage
from app.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

UUID_PATTERN = re.compile(
    rb"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I
)
INTERNAL_PREFIX = "/_llmtap/"
LOOPBACK = frozenset({"127.0.0.1", "::1"})

# Chunks kept for the record beyond the stored-body limit: enough to parse a
# stream whose text exceeds the limit, and the tail keeps its final usage.
TAIL_CHUNKS = 64


class StreamAborted(Exception):
    """Raised after the response started, so that uvicorn drops the connection.

    The client then sees an abnormally ended body instead of a clean end that
    would pass a truncated response off as complete.
    """


class ProxyApp:
    def __init__(
        self,
        settings: Settings,
        submit: Callable[[Exchange], None],
        internal: Callable[[Scope, Receive, Send], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.submit = submit
        self.internal = internal
        self.targets = TargetPolicy(settings)
        self.upstream: Upstream | None = None
        self.keep_bytes = 4 * settings.store_body_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(INTERNAL_PREFIX):
            await self.forward(scope, receive, send)
        else:
            await self.internal(scope, receive, send)

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        exchange = new_exchange(scope)
        try:
            await self.relay(exchange, scope, receive, send, started)
        except errors.ProxyError as error:
            exchange.end = END_PROXY_ERROR
            exchange.error_type = error.type
            exchange.error_message = error.message
            await send_error(send, error, exchange)
        finally:
            exchange.latency_ms = (time.perf_counter() - started) * 1000
            self.submit(exchange)

    async def relay(
        self,
        exchange: Exchange,
        scope: Scope,
        receive: Receive,
        send: Send,
        started: float,
    ) -> None:
        target_header, request_id, length, forwarded_for = scan_headers(
            exchange.request_headers
        )
        if request_id is not None:
            exchange.id = request_id
        # X-Forwarded-For is trusted from a loopback peer only: nginx in the
        # appliance, which sets it to the real client address.
        if forwarded_for and exchange.client in LOOPBACK:
            exchange.client = forwarded_for
        if length is not None and length > self.settings.max_request_bytes:
            raise self.too_large(length)

        exchange.request_body = await self.read_body(receive)
        exchange.target = self.targets.resolve(target_header)
        body = exchange.request_body
        if self.settings.inject_stream_usage:
            body, exchange.injected_usage = inject_include_usage(exchange.path, body)

        watcher = Watcher(receive)
        try:
            await self.exchange_with_upstream(exchange, body, send, started, watcher)
        except asyncio.CancelledError:
            if not watcher.client_gone:
                raise
            watcher.owner.uncancel()
            exchange.end = END_CLIENT_DISCONNECTED
        finally:
            watcher.stop()

    async def read_body(self, receive: Receive) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            part = message.get("body", b"")
            size += len(part)
            if size > self.settings.max_request_bytes:
                raise self.too_large(size)
            parts.append(part)
            if not message.get("more_body", False):
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def too_large(self, size: int) -> errors.RequestTooLarge:
        return errors.RequestTooLarge(
            f"request body of {size} bytes is larger than the limit of "
            f"{self.settings.max_request_bytes} bytes; raise LLMTAP_MAX_REQUEST_BYTES "
            "or send a smaller body"
        )

    async def exchange_with_upstream(
        self,
        exchange: Exchange,
        body: bytes,
        send: Send,
        started: float,
        watcher: "Watcher",
    ) -> None:
        assert self.upstream is not None, "the proxy's lifespan did not start"
        target = exchange.path.encode("latin-1")
        if exchange.query:
            target = target + b"?" + exchange.query
        request, response = await self.upstream.send(
            exchange.target or "",
            exchange.method,
            target,
            request_headers_for_upstream(exchange.request_headers),
            body,
        )
        try:
            await self.stream_response(exchange, response, send, started, watcher)
        finally:
            await response.aclose()

    async def stream_response(
        self,
        exchange: Exchange,
        response: httpcore.Response,
        send: Send,
        started: float,
        watcher: "Watcher",
    ) -> None:
        exchange.upstream_status = exchange.status_sent = response.status
        exchange.response_headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in response.headers
        ]
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers_for_client(response.headers, exchange.id),
            }
        )

        usage_filter = UsageChunkFilter() if exchange.injected_usage else None
        log = ChunkLog(exchange, self.keep_bytes, started)
        iterator = response.aiter_stream()
        try:
            if is_chunked(response.headers):
                await relay_stream(iterator, send, usage_filter, log)
            else:
                await relay_body(iterator, send, usage_filter, log)
        finally:
            log.close()
        watcher.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class ChunkLog:
    """Keeps the body chunks of an exchange for the record, with their times.

    Past the stored-body limit only the last TAIL_CHUNKS are kept.
    """

    def __init__(self, exchange: Exchange, keep_bytes: int, started: float) -> None:
        self.exchange = exchange
        self.keep_bytes = keep_bytes
        self.started = started
        self.kept_bytes = 0
        self.tail: list[tuple[float, bytes]] = []

    def add(self, arrived: float, chunk: bytes) -> None:
        at = (arrived - self.started) * 1000
        self.exchange.response_bytes += len(chunk)
        if self.kept_bytes < self.keep_bytes:
            self.exchange.chunks.append((at, chunk))
            self.kept_bytes += len(chunk)
            return
        self.exchange.chunks_truncated = True
        self.tail.append((at, chunk))
        if len(self.tail) > TAIL_CHUNKS:
            del self.tail[0]

    def close(self) -> None:
        self.exchange.chunks.extend(self.tail)


async def relay_next(
    iterator: AsyncIterator[bytes],
    send: Send,
    usage_filter: UsageChunkFilter | None,
    log: ChunkLog,
) -> bool:
    """Relay the body's next chunk to the client, or return False at its end."""
    chunk = await read_upstream(anext(iterator, None), log.exchange)
    if chunk is None:
        return False
    log.add(time.perf_counter(), chunk)
    await forward(send, usage_filter, chunk)
    return True


async def relay_body(
    iterator: AsyncIterator[bytes],
    send: Send,
    usage_filter: UsageChunkFilter | None,
    log: ChunkLog,
) -> None:
    while await relay_next(iterator, send, usage_filter, log):
        pass


async def relay_stream(
    iterator: AsyncIterator[bytes],
    send: Send,
    usage_filter: UsageChunkFilter | None,
    log: ChunkLog,
) -> None:
    """Relay a stream, sending the chunks that arrive together in one message.

    The first chunk goes out before the pump starts, so reading ahead never
    delays it.
    """
    if not await relay_next(iterator, send, usage_filter, log):
        return
    pump = BodyPump(iterator)
    try:
        while True:
            batch = await read_upstream(pump.take(), log.exchange)
            if batch is None:
                return
            for arrived, chunk in batch:
                log.add(arrived, chunk)
            await forward(send, usage_filter, b"".join(chunk for _, chunk in batch))
    finally:
        await pump.close()


async def read_upstream(reading: Awaitable[T], exchange: Exchange) -> T:
    """Await a read of the upstream body, raising StreamAborted when it fails."""
    try:
        return await reading
    except (
        httpcore.NetworkError,
        httpcore.ProtocolError,
        httpcore.TimeoutException,
    ) as error:
        exchange.end = stream_end_reason(error)
        exchange.error_message = str(error) or type(error).__name__
        raise StreamAborted(exchange.end) from None


async def forward(
    send: Send, usage_filter: UsageChunkFilter | None, body: bytes
) -> None:
    forwarded = usage_filter.feed(body) if usage_filter else body
    if forwarded:
        await send({"type": "http.response.body", "body": forwarded, "more_body": True})


def is_chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        name.lower() == b"transfer-encoding" and b"chunked" in value.lower()
        for name, value in headers
    )


class Watcher:
    """Cancels the proxy's work on an exchange when its client goes away.

    uvicorn reports a disconnect only through receive(), so a task waits on it
    and cancels the request's task; the upstream request is then closed at once
    instead of generating tokens no client reads.
    """

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.client_gone = False
        self.finished = False
        owner = asyncio.current_task()
        assert owner is not None
        self.owner = owner
        self.task = asyncio.ensure_future(self.watch())

    async def watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        # uvicorn also reports a disconnect once the response is complete.
        if not self.finished:
            self.client_gone = True
            self.owner.cancel()

    def stop(self) -> None:
        self.finished = True
        self.task.cancel()


def new_exchange(scope: Scope) -> Exchange:
    client = scope.get("client")
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    return Exchange(
        id=str(uuid.uuid4()),
        started_at=time.time(),
        method=scope["method"],
        path=path,
        query=scope.get("query_string", b""),
        client=client[0] if client else None,
        request_headers=scope["headers"],
    )


def scan_headers(
    headers: list[tuple[bytes, bytes]],
) -> tuple[bytes | None, str | None, int | None, str | None]:
    """Return the target header, a valid Helicone-Request-Id, the Content-Length
    and the last X-Forwarded-For address."""
    target = request_id = length = forwarded_for = None
    for name, value in headers:
        if name == b"helicone-target-url":
            target = value
        elif name == b"helicone-request-id" and UUID_PATTERN.match(value.strip()):
            request_id = value.strip().decode().lower()
        elif name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"x-forwarded-for":
            forwarded_for = value.rsplit(b",", 1)[-1].strip().decode("latin-1")
    return target, request_id, length, forwarded_for


def stream_end_reason(error: Exception) -> str:
    if isinstance(error, httpcore.TimeoutException):
        return END_IDLE_TIMEOUT
    if isinstance(error, httpcore.RemoteProtocolError):
        return END_UPSTREAM_CLOSED
    return END_UPSTREAM_RESET


async def send_error(send: Send, error: errors.ProxyError, exchange: Exchange) -> None:
    body = error.body()
    exchange.status_sent = error.status
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"helicone-id", exchange.id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
