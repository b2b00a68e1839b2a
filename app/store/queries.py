"""Read queries of the dashboard, run as the llmtap_web role.

Every function takes an open async psycopg connection with a dict row factory and
returns plain dicts, so the web views never build SQL themselves. Lists page with a
keyset on (started_at, id), newest first, which the index exchange_started_idx
serves directly.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import errors, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

# The connections the dashboard hands in use the dict_row factory.
Connection = psycopg.AsyncConnection[DictRow]

# Columns of one row in the exchange list: everything but bodies and headers.
SUMMARY_COLUMNS = (
    "id",
    "started_at",
    "recorded_at",
    "method",
    "path",
    "endpoint",
    "is_stream",
    "model",
    "http_status",
    "outcome",
    "error_kind",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "usage_source",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "tokens_per_s",
    "user_id",
    "user_name",
    "session_id",
    "session_path",
    "session_name",
    "left(prompt_text, 200) AS prompt_snippet",
    "left(response_text, 200) AS response_snippet",
)

# The stored texts that full-text search covers, capped so that a 1 MiB prompt
# stays under the tsvector size limit. Migration 0002 indexes this exact
# expression; a change here must change the index too.
SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, "
    "left(coalesce(prompt_text, ''), 100000) || ' ' || "
    "left(coalesce(response_text, ''), 100000))"
)

MAX_PAGE_SIZE = 500


class SchemaMissingError(Exception):
    """The table llmtap.exchange does not exist yet because migrations have not run."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position in the newest-first list: the last (started_at, id) already shown."""

    started_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = f"{self.started_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a token made by encode(); raise ValueError when it is not one."""
        padded = token + "=" * (-len(token) % 4)
        try:
            started, _, ident = base64.urlsafe_b64decode(padded).decode().partition("|")
            return cls(datetime.fromisoformat(started), UUID(ident))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"invalid page cursor {token!r}") from exc


@dataclass(frozen=True, slots=True)
class ExchangeFilter:
    """Conditions on the exchange list; None or an empty string means no condition."""

    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    outcome: str | None = None
    errors_only: bool = False
    path: str | None = None
    property_key: str | None = None
    property_value: str | None = None
    search: str | None = None

    def conditions(self) -> list[sql.Composable]:
        """Return one SQL condition per set field, to be joined with AND."""
        conditions: list[sql.Composable] = []
        equalities = {
            "model": self.model,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "outcome": self.outcome,
            "path": self.path,
        }
        for column, value in equalities.items():
            if value:
                conditions.append(
                    sql.SQL("{} = {}").format(sql.Identifier(column), value)
                )

        if self.since is not None:
            conditions.append(sql.SQL("started_at >= {}").format(self.since))
        if self.until is not None:
            conditions.append(sql.SQL("started_at < {}").format(self.until))
        if self.errors_only:
            conditions.append(sql.SQL("outcome <> 'success'"))
        conditions.extend(self._property_conditions())
        if self.search:
            conditions.append(
                sql.SQL(
                    SEARCH_DOCUMENT + " @@ websearch_to_tsquery('simple', {})"
                ).format(self.search)
            )
        return conditions

    def _property_conditions(self) -> list[sql.Composable]:
        # The jsonb_path_ops GIN index serves containment (@>) only. A key
        # without a value needs the ? operator, which that index cannot use.
        if (
            self.property_key
            and self.property_value is not None
            and self.property_value != ""
        ):
            document = Jsonb({self.property_key: self.property_value})
            return [sql.SQL("properties @> {}").format(document)]
        if self.property_key:
            return [sql.SQL("properties ? {}").format(self.property_key)]
        return []


def where_clause(conditions: list[sql.Composable]) -> sql.Composable:
    """Return " WHERE a AND b ..." for the conditions, or nothing for none."""
    if not conditions:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)


async def _fetch_all(conn: Connection, query: sql.Composed) -> list[dict[str, Any]]:
    try:
        cursor = await conn.execute(query)
        return await cursor.fetchall()
    except errors.UndefinedTable as exc:
        raise SchemaMissingError(str(exc)) from exc
    except errors.InsufficientPrivilege as exc:
        # Before the first migration the web role has no USAGE on schema llmtap,
        # so a missing table shows up as a permission error.
        if not await _exchange_table_exists(conn):
            raise SchemaMissingError(str(exc)) from exc
        raise


async def _exchange_table_exists(conn: Connection) -> bool:
    cursor = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'llmtap' AND c.relname = 'exchange') AS present"
    )
    row = await cursor.fetchone()
    return bool(row and row["present"])


async def list_exchanges(
    conn: Connection,
    where: ExchangeFilter,
    before: Cursor | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Return up to limit exchange summaries, newest first, older than before."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    conditions = where.conditions()
    if before is not None:
        keyset = sql.SQL("(started_at, id) < ({}, {})")
        conditions.append(keyset.format(before.started_at, before.id))

    query = sql.SQL(
        "SELECT {columns} FROM llmtap.exchange{where}"
        " ORDER BY started_at DESC, id DESC LIMIT {limit}"
    ).format(
        columns=sql.SQL(", ").join(sql.SQL(c) for c in SUMMARY_COLUMNS),
        where=where_clause(conditions),
        limit=limit,
    )
    return await _fetch_all(conn, query)


async def get_exchange(conn: Connection, exchange_id: UUID) -> dict[str, Any] | None:
    """Return every column of one exchange, or None when no exchange has that id."""
    query = sql.SQL("SELECT * FROM llmtap.exchange WHERE id = {}").format(exchange_id)
    rows = await _fetch_all(conn, query)
    return rows[0] if rows else None


async def get_neighbours(
    conn: Connection, started_at: datetime, exchange_id: UUID
) -> dict[str, UUID | None]:
    """Return the ids of the next newer and next older exchange in list order."""
    query = sql.SQL(
        "SELECT"
        " (SELECT id FROM llmtap.exchange WHERE (started_at, id) > ({ts}, {id})"
        "  ORDER BY started_at, id LIMIT 1) AS newer,"
        " (SELECT id FROM llmtap.exchange WHERE (started_at, id) < ({ts}, {id})"
        "  ORDER BY started_at DESC, id DESC LIMIT 1) AS older"
    ).format(ts=started_at, id=exchange_id)
    rows = await _fetch_all(conn, query)
    return rows[0]
