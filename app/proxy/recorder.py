"""The recorder process: from the spool to PostgreSQL.

`python -m app.proxy.recorder` runs beside the proxy's uvicorn process (started
by `python -m app.proxy`). It takes spool segments oldest first, parses each
exchange, builds its row, logs the one INFO line per exchange and inserts the
batch. A segment is removed only after its rows are committed, so a database
that is down, slow, full or not yet migrated only makes segments wait.
"""

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from app.logs import configure_logging
from app.pricing import load_prices
from app.proxy.exchange import decode_exchanges
from app.proxy.record import RowBuilder, encode_row
from app.proxy.spooler import RateLimitedWarning
from app.settings import Settings, get_settings
from app.store.retention import RetentionSchedule
from app.store.spool import Spool, segment_count, write_status
from app.store.writer import ROW_ERRORS, Writer

logger = logging.getLogger(__name__)

# Pause between two looks at the spool when it is empty.
POLL_INTERVAL_S = 0.05
# The status file the proxy's health endpoint reads is rewritten this often.
STATUS_INTERVAL_S = 1.0
# Exchanges inserted by one statement at most. Each statement also runs the
# summary triggers once, so a backlog drains faster in large statements.
BATCH_EXCHANGES = 500


class Recorder:
    def __init__(self, settings: Settings) -> None:
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self.writer = Writer(settings)
        self.builder = RowBuilder(settings, load_prices(settings.price_file))
        self.retention = RetentionSchedule(settings)
        self.stopping = False
        self.status_at = 0.0
        self.spool_failed = RateLimitedWarning("spool not readable; recorder waits")
        self.duplicates = RateLimitedWarning(
            "exchanges skipped because their id is already stored (a repeated "
            "Helicone-Request-Id, or a segment written twice after a crash)"
        )

    async def run(self) -> None:
        recovered = self.spool.recover()
        if recovered:
            logger.info(
                "spool segments recovered from stopped processes count=%d", recovered
            )
        while not self.stopping:
            try:
                shipped = await self.ship()
                await self.retention.run_due(self.writer)
                self.write_status()
            except OSError as error:
                # The spool directory cannot be read or written just now.
                self.spool_failed.add(detail=f"error={error}")
                shipped = 0
                await asyncio.sleep(1)
            except Exception:  # noqa: BLE001 - the loop must outlive any bug
                logger.exception("recorder loop failed; retrying")
                shipped = 0
                await asyncio.sleep(1)
            if not shipped:
                await asyncio.sleep(POLL_INTERVAL_S)
        await self.writer.close()

    async def ship(self) -> int:
        """Write every ready segment, oldest first; return the exchanges written."""
        if not self.writer.due():
            return 0
        written = 0
        ready = self.spool.ready()
        while ready:
            batch, ready = take_batch(ready)
            stored = await self.ship_batch(batch)
            if stored is None:
                return written
            written += stored
        if written:
            self.writer.recovered()
        return written

    async def ship_batch(self, segments: list[Path]) -> int | None:
        """Insert the exchanges of some segments in one statement.

        Returns the exchanges written, or None when the database failed and the
        segments went back to the spool.
        """
        claimed: list[Path] = []
        rows: list[dict[str, object]] = []
        for segment in segments:
            claimed_segment = self.spool.claim(segment)
            if claimed_segment is None:
                continue
            segment_rows = self.rows(claimed_segment)
            if segment_rows is not None:
                claimed.append(claimed_segment)
                rows += segment_rows
        if not claimed:
            return 0

        lines = [encode_row(row) for row in rows]
        try:
            inserted = await self.writer.insert(lines)
        except ROW_ERRORS as error:
            inserted = await self.writer.insert_isolated(lines, error)
        except Exception as error:  # noqa: BLE001 - any database failure waits
            for path in claimed:
                self.spool.release(path)
            await self.writer.fail(error)
            return None

        for path in claimed:
            path.unlink()
        # Logged once stored, so a segment retried during an outage logs once.
        for row in rows:
            log_exchange(row)
        if inserted < len(lines):
            self.duplicates.add(len(lines) - inserted)
        return len(lines)

    def rows(self, segment: Path) -> list[dict[str, object]] | None:
        """Build the rows of a claimed segment; None when it cannot be decoded.

        An undecodable segment is set aside as .corrupt and its exchanges are
        counted as dropped, so it never blocks the segments after it.
        """
        try:
            exchanges = decode_exchanges(segment.read_bytes())
        except (ValueError, EOFError, TypeError) as error:
            count = segment_count(segment)
            segment.rename(segment.with_suffix(".corrupt"))
            self.spool.add_dropped(count)
            logger.error(
                "spool segment unreadable; set aside segment=%s count=%d error=%s",
                segment.name,
                count,
                error,
            )
            return None
        return [self.builder.build(exchange) for exchange in exchanges]

    def write_status(self) -> None:
        now = time.monotonic()
        if now - self.status_at < STATUS_INTERVAL_S:
            return
        self.status_at = now
        status = {"database_error": self.writer.failing, "shipped": self.writer.shipped}
        write_status(self.spool.directory, status)


def take_batch(ready: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split off the oldest segments that together contain at most BATCH_EXCHANGES.

    The first segment is always taken, however many exchanges it contains.
    """
    count = segment_count(ready[0])
    length = 1
    while length < len(ready):
        count += segment_count(ready[length])
        if count > BATCH_EXCHANGES:
            break
        length += 1
    return ready[:length], ready[length:]


# Outcomes logged at WARNING: the upstream failed, timed out or the client left.
WARNING_OUTCOMES = frozenset(
    {"upstream_timeout", "upstream_incomplete", "client_disconnected", "proxy_error"}
)


def log_exchange(row: dict[str, object]) -> None:
    """Log the one line per exchange; WARNING for failures, INFO otherwise."""
    level = logging.WARNING if row["outcome"] in WARNING_OUTCOMES else logging.INFO
    logger.log(
        level,
        "exchange id=%s client=%s user=%s model=%s path=%s status=%s outcome=%s "
        "error=%s stream=%s ms=%s ttft=%s tokens=%s/%s",
        row["id"],
        row["client_addr"],
        row["user_id"],
        row["model"],
        row["path"],
        row["http_status"],
        row["outcome"],
        row["error_kind"] or "-",
        row["is_stream"],
        _ms(row["latency_ms"]),
        _ms(row["ttft_ms"]),
        row["prompt_tokens"],
        row["completion_tokens"],
    )


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "-"


def watch_parent(recorder: Recorder, loop: asyncio.AbstractEventLoop) -> None:
    """Stop the recorder once the proxy that started it is gone.

    The proxy keeps the write end of our stdin; it closes when the proxy exits,
    however it exits, and the read end then reports end of file.
    """
    descriptor = sys.stdin.fileno()

    def on_readable() -> None:
        if not os.read(descriptor, 4096):
            loop.remove_reader(descriptor)
            recorder.stopping = True

    loop.add_reader(descriptor, on_readable)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    recorder = Recorder(settings)
    loop = asyncio.new_event_loop()
    # SIGTERM (supervisord stopping the proxy) finishes the current batch first.
    loop.add_signal_handler(signal.SIGTERM, setattr, recorder, "stopping", True)
    if not sys.stdin.isatty():
        watch_parent(recorder, loop)
    logger.info("recorder started spool=%s", settings.spool_dir)
    loop.run_until_complete(recorder.run())
    logger.info("recorder stopped")


if __name__ == "__main__":
    main()
