"""The proxy's side of recording: finished exchanges go to the spool in batches.

submit() only appends to a list, so the request that finished never waits. A
background task writes what accumulated as one spool segment every
FLUSH_INTERVAL_S; from then on the exchanges survive a crash of the proxy. The
recorder process parses them and writes them to PostgreSQL, on the other core,
so parsing never competes with forwarding.
"""

import asyncio
import logging

from app.proxy.exchange import Exchange, encode_exchanges
from app.store.spool import Spool

logger = logging.getLogger(__name__)

# How long a finished exchange may wait in memory before it is spooled. This is
# the window of exchanges a SIGKILL of the proxy can lose besides those in flight.
FLUSH_INTERVAL_S = 0.05
# Exchanges waiting in memory before the oldest are dropped and counted, so
# memory stays bounded even when the disk is slower than the traffic.
QUEUE_LIMIT = 20_000


class Spooler:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.pending: list[Exchange] = []
        self.dropped = 0
        self.task: asyncio.Task[None] | None = None

    def submit(self, exchange: Exchange) -> None:
        """Queue a finished exchange; never blocks and never raises."""
        if len(self.pending) >= QUEUE_LIMIT:
            del self.pending[0]
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning(
                    "spooler queue full; oldest exchanges dropped count=%d",
                    self.dropped,
                )
        self.pending.append(exchange)

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="llmtap-spooler")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except OSError as error:
                # A full or read-only volume: keep the batch and try again.
                logger.warning("spool write failed; retrying error=%s", error)
                await asyncio.sleep(1)

    async def flush(self) -> None:
        """Spool what is pending; the file writes happen off the event loop."""
        if not self.pending:
            return
        batch = self.pending
        self.pending = []
        payload = encode_exchanges(batch)
        try:
            await asyncio.to_thread(self.write, payload, len(batch))
        except OSError:
            self.pending[:0] = batch
            raise

    def write(self, payload: bytes, count: int) -> None:
        self.spool.append(payload, count)
        dropped = self.spool.enforce_limit()
        if dropped:
            logger.warning(
                "spool full; oldest unsent exchanges dropped count=%d", dropped
            )

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        try:
            await self.flush()
        except OSError as error:
            logger.error(
                "exchanges lost at shutdown count=%d error=%s", len(self.pending), error
            )
