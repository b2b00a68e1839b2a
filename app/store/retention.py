"""Retention: deletes the oldest exchanges by age and by table size.

The deleting happens in the database, in llmtap.apply_retention (migration
0003), which the proxy role may execute but which runs as the schema owner.
This module calls it in short batches, each in its own transaction, so that a
large clean-up never holds locks for long or keeps the recorder from writing
the spool.
"""

import asyncio
import logging
import time
from datetime import timedelta

import psycopg
from psycopg import errors as pg_errors

from app.settings import Settings
from app.store.writer import Writer

logger = logging.getLogger(__name__)

# Rows deleted per call of llmtap.apply_retention: large enough that a backlog
# of tens of thousands of rows goes in a few calls, small enough that one
# transaction stays short.
BATCH_ROWS = 5000
# Pause between batches, so the proxy's inserts and the dashboard's queries
# get the database between two deletes.
PAUSE_S = 0.05
# A run stops after this much time even if more rows are due, and the next run
# continues. The recorder ships no spool segment while a run lasts.
RUN_BUDGET_S = 2.0
# Time between two runs of the recorder's schedule.
INTERVAL_S = 60.0

CALL = "SELECT llmtap.apply_retention(%s::interval, %s::bigint, %s::integer) AS deleted"


def retention_enabled(settings: Settings) -> bool:
    """Return True when an age or a size limit is set."""
    return settings.retention_max_age_days > 0 or settings.retention_max_db_bytes > 0


async def apply_retention(
    connection: psycopg.AsyncConnection,
    settings: Settings,
    budget_s: float = RUN_BUDGET_S,
) -> int:
    """Delete exchanges past the retention limits in batches; return how many.

    Does nothing when both limits are 0. Stops once a batch comes back short
    or after `budget_s` seconds.
    """
    if not retention_enabled(settings):
        return 0

    max_age = None
    if settings.retention_max_age_days > 0:
        max_age = timedelta(days=settings.retention_max_age_days)
    parameters = (max_age, settings.retention_max_db_bytes, BATCH_ROWS)
    deadline = time.monotonic() + budget_s
    total = 0

    while True:
        async with connection.transaction():
            cursor = await connection.execute(CALL, parameters)
            row = await cursor.fetchone()
        deleted = int(row[0]) if row else 0
        total += deleted
        if deleted < BATCH_ROWS or time.monotonic() >= deadline:
            return total
        await asyncio.sleep(PAUSE_S)


class RetentionSchedule:
    """Runs apply_retention from the recorder's loop, at most once a minute.

    It uses the writer's connection and skips its turn while the writer is
    failing, because the database is then down or not migrated.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.next_at = 0.0
        self.failing: str | None = None

    async def run_due(self, writer: Writer) -> None:
        """Apply retention if a limit is set and the last run is a minute old."""
        now = time.monotonic()
        if not retention_enabled(self.settings) or now < self.next_at:
            return
        if writer.failing is not None:
            return
        self.next_at = now + INTERVAL_S

        try:
            connection = await writer.connect()
            deleted = await apply_retention(connection, self.settings)
        except psycopg.Error as error:
            self.warn(error)
            return

        self.failing = None
        if deleted:
            logger.info("retention deleted exchanges count=%d", deleted)

    def warn(self, error: psycopg.Error) -> None:
        # A run happens once a minute, and the same failure is logged only once.
        reason = _reason(error)
        if reason != self.failing:
            logger.warning(
                "retention failed; it is retried in %.0fs reason=%s",
                INTERVAL_S,
                reason,
            )
        self.failing = reason


def _reason(error: psycopg.Error) -> str:
    if isinstance(error, pg_errors.UndefinedFunction):
        return "llmtap.apply_retention missing: run migrate"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
