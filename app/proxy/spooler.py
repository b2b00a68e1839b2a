"""The proxy's side of recording: finished exchanges go to the spool in batches.

submit() only appends to a queue, so the request that finished never waits. A
background task writes what accumulated as spool segments every
FLUSH_INTERVAL_S; from then on the exchanges survive a crash of the proxy. The
recorder process parses them and writes them to PostgreSQL, on the other core,
so parsing never competes with forwarding. Credentials are removed before an
exchange reaches the disk.
"""

import asyncio
import logging
import time
from collections import deque

from app.proxy.exchange import Exchange, encode_exchanges
from app.proxy.redaction import scrub_credentials
from app.store.spool import Spool

logger = logging.getLogger(__name__)

# How long a finished exchange may wait in memory before it is spooled. This is
# the window of exchanges a SIGKILL of the proxy can lose besides those in flight.
FLUSH_INTERVAL_S = 0.05
# Memory that exchanges waiting for the spool may take, by count and by bytes of
# bodies. Past either limit the oldest are dropped and counted, so memory stays
# bounded while the volume cannot be written.
QUEUE_LIMIT = 20_000
QUEUE_LIMIT_BYTES = 64 * 1024 * 1024
# Largest spool segment written at once. A long backlog becomes several
# segments, so the spool limit drops its oldest part and not all of it.
SEGMENT_MAX_BYTES = 4 * 1024 * 1024
SEGMENT_MAX_EXCHANGES = 500
# A repeated warning is logged at most this often, with the count since the last.
WARNING_INTERVAL_S = 60.0


class RateLimitedWarning:
    """One WARNING line per interval for an event that can repeat many times."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.count = 0
        self.logged_at = float("-inf")

    def add(self, count: int = 1, detail: object = "") -> None:
        self.count += count
        now = time.monotonic()
        if now - self.logged_at >= WARNING_INTERVAL_S:
            logger.warning("%s count=%d %s", self.message, self.count, detail)
            self.logged_at = now
            self.count = 0


class Spooler:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.pending: deque[tuple[Exchange, int]] = deque()
        self.pending_bytes = 0
        # Dropped from memory and not yet added to the spool's persistent count.
        self.unreported_drops = 0
        self.task: asyncio.Task[None] | None = None
        self.queue_full = RateLimitedWarning(
            "spooler queue full; oldest exchanges dropped"
        )
        self.spool_full = RateLimitedWarning(
            "spool full; oldest unsent exchanges dropped"
        )
        self.write_failed = RateLimitedWarning(
            "spool write failed; exchanges kept in memory"
        )

    def submit(self, exchange: Exchange) -> None:
        """Queue a finished exchange; never blocks and never raises."""
        size = len(exchange.request_body) + sum(
            len(chunk) for _, chunk in exchange.chunks
        )
        self.pending.append((exchange, size))
        self.pending_bytes += size
        while len(self.pending) > QUEUE_LIMIT or self.pending_bytes > QUEUE_LIMIT_BYTES:
            _, dropped_size = self.pending.popleft()
            self.pending_bytes -= dropped_size
            self.unreported_drops += 1
            self.queue_full.add()

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="llmtap-spooler")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except OSError as error:
                # A full or read-only volume: the exchanges wait in memory.
                self.write_failed.add(detail=f"error={error}")
                await asyncio.sleep(1)

    async def flush(self) -> None:
        """Write what is pending as spool segments; file writes run off the loop."""
        if self.unreported_drops:
            await asyncio.to_thread(self.spool.add_dropped, self.unreported_drops)
            self.unreported_drops = 0
        while self.pending:
            batch = self.take_segment()
            payload = encode_exchanges([exchange for exchange, _ in batch])
            try:
                await asyncio.to_thread(self.write, payload, len(batch))
            except OSError:
                self.pending.extendleft(reversed(batch))
                self.pending_bytes += sum(size for _, size in batch)
                raise

    def take_segment(self) -> list[tuple[Exchange, int]]:
        batch: list[tuple[Exchange, int]] = []
        size = 0
        while self.pending and len(batch) < SEGMENT_MAX_EXCHANGES:
            if batch and size + self.pending[0][1] > SEGMENT_MAX_BYTES:
                break
            exchange, exchange_size = self.pending.popleft()
            scrub_credentials(exchange)
            batch.append((exchange, exchange_size))
            size += exchange_size
        self.pending_bytes -= size
        return batch

    def write(self, payload: bytes, count: int) -> None:
        self.spool.append(payload, count)
        dropped = self.spool.enforce_limit()
        if dropped:
            self.spool_full.add(dropped)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        try:
            await self.flush()
        except OSError as error:
            logger.error(
                "exchanges lost at shutdown count=%d error=%s", len(self.pending), error
            )
