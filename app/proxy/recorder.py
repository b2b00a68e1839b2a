"""The recorder: everything that happens to an exchange after it has ended.

The proxy hands each finished Exchange to submit(), which only appends it to a
bounded queue. A background task takes the queue in batches: it parses each
exchange, builds its row, logs the one INFO line per exchange, writes the batch
to the spool (the point at which rows count as accepted) and ships the spool to
PostgreSQL. The client's response never waits for any of it.
"""

import asyncio
import logging
from collections import deque

from app.proxy.exchange import Exchange
from app.proxy.metadata import secret_values
from app.proxy.record import RowBuilder, encode_row
from app.store.spool import Spool
from app.store.writer import Writer

logger = logging.getLogger(__name__)

# Exchanges waiting to be parsed. Past this the oldest are dropped and counted,
# so memory stays bounded even when parsing falls behind a burst.
QUEUE_LIMIT = 10_000
# Exchanges parsed per batch before the loop yields to the proxy again.
BATCH_SIZE = 200
# How long a finished exchange may wait before its batch is written.
FLUSH_INTERVAL_S = 0.05
# Ship attempts happen at least this often even when no exchange arrives, so a
# database that comes back receives the spool without new traffic.
SHIP_INTERVAL_S = 1.0


class Recorder:
    def __init__(self, builder: RowBuilder, spool: Spool, writer: Writer) -> None:
        self.builder = builder
        self.spool = spool
        self.writer = writer
        self.queue: deque[Exchange] = deque()
        self.wakeup = asyncio.Event()
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None
        self.stopping = False

    def submit(self, exchange: Exchange) -> None:
        """Queue a finished exchange; never blocks and never raises."""
        if len(self.queue) >= QUEUE_LIMIT:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "recorder queue full; oldest exchanges dropped count=%d",
                    self.dropped,
                )
        self.queue.append(exchange)
        if not self.wakeup.is_set():
            self.wakeup.set()

    def start(self) -> None:
        recovered = self.spool.recover()
        if recovered:
            logger.info(
                "spool segments recovered from stopped workers count=%d", recovered
            )
        self.task = asyncio.create_task(self.run(), name="llmtap-recorder")

    async def run(self) -> None:
        while not self.stopping:
            try:
                await asyncio.wait_for(self.wakeup.wait(), SHIP_INTERVAL_S)
            except TimeoutError:
                pass
            self.wakeup.clear()
            # Let a burst of exchanges finish before writing them as one batch.
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
                await self.writer.ship()
            except Exception:  # noqa: BLE001 - the loop must outlive any bug
                logger.exception("recorder loop failed; retrying")
                await asyncio.sleep(1)

    async def flush(self) -> None:
        """Parse every queued exchange and write the rows to the spool."""
        while self.queue:
            lines: list[bytes] = []
            while self.queue and len(lines) < BATCH_SIZE:
                exchange = self.queue.popleft()
                lines.append(self.record(exchange))
            self.spool.append(lines)
            dropped = self.spool.enforce_limit()
            if dropped:
                logger.warning(
                    "spool full; oldest unsent exchanges dropped count=%d", dropped
                )
            await asyncio.sleep(0)

    def record(self, exchange: Exchange) -> bytes:
        row = self.builder.build(exchange)
        log_exchange(row)
        return encode_row(row, secret_values(exchange.request_headers, exchange.query))

    async def stop(self) -> None:
        """Write what is queued to the spool, try one last ship, then stop."""
        self.stopping = True
        self.wakeup.set()
        if self.task is not None:
            await asyncio.wait([self.task], timeout=5)
        await self.flush()
        try:
            await asyncio.wait_for(self.writer.ship(), timeout=5)
        except (TimeoutError, OSError):
            logger.warning(
                "spool kept for the next start; database did not take it in time"
            )
        await self.writer.close()


def log_exchange(row: dict[str, object]) -> None:
    logger.info(
        "exchange id=%s client=%s user=%s model=%s path=%s status=%s outcome=%s "
        "stream=%s ms=%s ttft=%s tokens=%s/%s",
        row["id"],
        row["client_addr"],
        row["user_id"],
        row["model"],
        row["path"],
        row["http_status"],
        row["outcome"],
        row["is_stream"],
        _ms(row["latency_ms"]),
        _ms(row["ttft_ms"]),
        row["prompt_tokens"],
        row["completion_tokens"],
    )


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "-"
