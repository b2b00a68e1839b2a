"""Writes exchange rows to PostgreSQL, exactly once.

A batch of rows goes in one INSERT ... SELECT from jsonb_populate_recordset, so
the rows' JSON reaches the server as it is, with no per-column work in Python.
ON CONFLICT (id) DO NOTHING makes a batch written twice (after a crash between
commit and removing its spool segment) harmless.
"""

import logging
import time

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from app.settings import Settings
from app.store.db import conninfo

logger = logging.getLogger(__name__)

# Columns written by the proxy; recorded_at keeps its server-side default.
COLUMNS = (
    "id", "started_at", "method", "path", "query", "target_url", "endpoint",
    "is_stream", "model", "http_status", "upstream_status", "outcome", "error_kind",
    "error_message", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "reasoning_tokens", "usage_source", "cost_usd", "latency_ms",
    "ttft_ms", "first_byte_ms", "tokens_per_s", "user_id", "user_name", "user_email",
    "user_role", "user_source", "session_id", "session_path", "session_name",
    "properties", "client_addr", "request_headers", "response_headers",
    "request_body", "response_body", "request_bytes", "response_bytes",
    "request_truncated", "response_truncated", "request_omitted", "response_omitted",
    "prompt_text", "response_text", "reasoning_text", "tool_calls", "choices",
    "finish_reason", "timeline", "notes", "sanitized",
)  # fmt: skip

INSERT = sql.SQL(
    "INSERT INTO llmtap.exchange ({columns}) "
    "SELECT {columns} FROM jsonb_populate_recordset(NULL::llmtap.exchange, %s::jsonb) "
    "ON CONFLICT (id) DO NOTHING"
).format(columns=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))

# Errors caused by the content of a row rather than by the database's state.
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError)

# Back-off between attempts while the database is unreachable or not migrated.
RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0
# A repeated failure is logged at most this often.
WARNING_INTERVAL_S = 60.0


class Writer:
    """Inserts row batches into PostgreSQL and tracks the database's health.

    After a failure, `due()` stays false for a back-off that doubles up to
    RETRY_MAX_S, so an unreachable database costs one attempt per interval.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.connection: psycopg.AsyncConnection | None = None
        self.retry_at = 0.0
        self.delay_s = RETRY_MIN_S
        self.failing: str | None = None
        self.warned_at = 0.0
        self.shipped = 0

    def due(self) -> bool:
        return time.monotonic() >= self.retry_at

    async def insert(self, lines: list[bytes]) -> int:
        """Insert JSON-line rows in one statement; return how many were new."""
        if not lines:
            return 0
        connection = await self.connect()
        payload = b"[" + b",".join(lines) + b"]"
        async with connection.transaction():
            cursor = await connection.execute(INSERT, (payload.decode("utf-8"),))
        self.shipped += len(lines)
        return cursor.rowcount

    async def insert_isolated(self, lines: list[bytes], error: Exception) -> int:
        """Insert rows one by one, so a row the database rejects loses only itself."""
        written = 0
        rejected = 0
        for line in lines:
            try:
                written += await self.insert([line])
            except ROW_ERRORS as row_error:
                rejected += 1
                logger.error(
                    "exchange row rejected by the database error=%s", row_error
                )
        logger.error(
            "batch partly rejected rejected=%d of=%d first_error=%s",
            rejected,
            len(lines),
            error,
        )
        return written

    async def connect(self) -> psycopg.AsyncConnection:
        if self.connection is None or self.connection.closed:
            self.connection = await psycopg.AsyncConnection.connect(
                conninfo(self.settings, "proxy")
            )
        return self.connection

    async def fail(self, error: Exception) -> None:
        reason = _reason(error)
        now = time.monotonic()
        if reason != self.failing or now - self.warned_at > WARNING_INTERVAL_S:
            logger.warning(
                "database write failed; exchanges stay in the spool "
                "reason=%s retry_s=%.1f",
                reason,
                self.delay_s,
            )
            self.warned_at = now
        self.failing = reason
        self.retry_at = now + self.delay_s
        self.delay_s = min(self.delay_s * 2, RETRY_MAX_S)
        if self.connection is not None:
            await self.connection.close()
            self.connection = None

    def recovered(self) -> None:
        if self.failing is not None:
            logger.info("database writes resumed after failure=%s", self.failing)
        self.failing = None
        self.delay_s = RETRY_MIN_S

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()


def _reason(error: Exception) -> str:
    if isinstance(error, pg_errors.UndefinedTable):
        return "schema missing: run migrate"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
