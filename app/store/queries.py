"""Read queries of the dashboard, run as the llmtap_web role.

Every function takes an open async psycopg connection with a dict row factory and
returns plain dicts, so the web views never build SQL themselves. Lists page with a
keyset on (started_at, id), newest first, which the index exchange_started_idx
serves directly.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
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

# The stored texts that full-text search covers: the prompt snippet, the answer
# and the start of the request body as JSON text, which contains the system
# prompt and earlier turns. The caps keep the tsvector under PostgreSQL's 1 MiB limit
# (180 000 characters of unique 4-character words made 342 kB), because an
# oversized one would make the proxy's insert fail. Migration 0002 indexes this
# exact expression, so a change here must change the index too.
SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, "
    "left(coalesce(prompt_text, ''), 20000) || ' ' || "
    "left(coalesce(response_text, ''), 80000) || ' ' || "
    "left(coalesce(request_body::text, ''), 80000))"
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


async def fetch_all(
    conn: Connection, query: sql.SQL | sql.Composed
) -> list[dict[str, Any]]:
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
    return await fetch_all(conn, query)


async def get_exchange(conn: Connection, exchange_id: UUID) -> dict[str, Any] | None:
    """Return every column of one exchange, or None when no exchange has that id."""
    query = sql.SQL("SELECT * FROM llmtap.exchange WHERE id = {}").format(exchange_id)
    rows = await fetch_all(conn, query)
    return rows[0] if rows else None


async def get_neighbours(
    conn: Connection,
    started_at: datetime,
    exchange_id: UUID,
    where: ExchangeFilter | None = None,
) -> dict[str, UUID | None]:
    """Return the ids of the next newer and next older exchange in the filtered list."""
    conditions = (where or ExchangeFilter()).conditions()
    newer = [
        *conditions,
        sql.SQL("(started_at, id) > ({}, {})").format(started_at, exchange_id),
    ]
    older = [
        *conditions,
        sql.SQL("(started_at, id) < ({}, {})").format(started_at, exchange_id),
    ]
    query = sql.SQL(
        "SELECT"
        " (SELECT id FROM llmtap.exchange{newer}"
        "  ORDER BY started_at, id LIMIT 1) AS newer,"
        " (SELECT id FROM llmtap.exchange{older}"
        "  ORDER BY started_at DESC, id DESC LIMIT 1) AS older"
    ).format(newer=where_clause(newer), older=where_clause(older))
    rows = await fetch_all(conn, query)
    return rows[0]


async def list_recorded_after(
    conn: Connection,
    where: ExchangeFilter,
    after: tuple[datetime, UUID] | None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Return summaries recorded after the (recorded_at, id) position, oldest first.

    Live mode follows recorded_at rather than started_at, because a long stream
    is recorded when it ends, after exchanges that started later.
    """
    conditions = where.conditions()
    if after is not None:
        keyset = sql.SQL("(recorded_at, id) > ({}, {})")
        conditions.append(keyset.format(*after))

    query = sql.SQL(
        "SELECT {columns} FROM llmtap.exchange{where}"
        " ORDER BY recorded_at, id LIMIT {limit}"
    ).format(
        columns=sql.SQL(", ").join(sql.SQL(c) for c in SUMMARY_COLUMNS),
        where=where_clause(conditions),
        limit=max(1, min(limit, MAX_PAGE_SIZE)),
    )
    return await fetch_all(conn, query)


async def latest_recorded(conn: Connection) -> tuple[datetime, UUID] | None:
    """Return the (recorded_at, id) of the last recorded exchange, if any."""
    query = sql.SQL(
        "SELECT recorded_at, id FROM llmtap.exchange"
        " ORDER BY recorded_at DESC, id DESC LIMIT 1"
    )
    rows = await fetch_all(conn, query)
    return (rows[0]["recorded_at"], rows[0]["id"]) if rows else None


# Columns of an export: the summary plus the full prompt and response texts.
EXPORT_COLUMNS = tuple(c for c in SUMMARY_COLUMNS if " AS " not in c) + (
    "properties",
    "prompt_text",
    "response_text",
    "error_message",
)


async def stream_export(
    conn: Connection, where: ExchangeFilter, full: bool
) -> AsyncIterator[dict[str, Any]]:
    """Yield the filtered exchanges newest first, one row at a time.

    full adds bodies and headers. Rows come from the server as the client
    reads them, so an export of a million exchanges never sits in memory.
    """
    columns = sql.SQL("*") if full else sql.SQL(", ").join(map(sql.SQL, EXPORT_COLUMNS))
    query = sql.SQL(
        "SELECT {columns} FROM llmtap.exchange{where} ORDER BY started_at DESC, id DESC"
    ).format(columns=columns, where=where_clause(where.conditions()))

    cursor = conn.cursor()
    try:
        async for row in cursor.stream(query):
            yield row
    except errors.UndefinedTable as exc:
        raise SchemaMissingError(str(exc)) from exc
    finally:
        await cursor.close()


def _range_conditions(
    since: datetime | None, until: datetime | None
) -> list[sql.Composable]:
    return ExchangeFilter(since=since, until=until).conditions()


async def overview_totals(
    conn: Connection, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """Return request, error, token, cost, latency and speed totals for a range."""
    query = sql.SQL(
        "SELECT count(*) AS exchanges,"
        " count(*) FILTER (WHERE outcome <> 'success') AS errors,"
        " sum(prompt_tokens) AS prompt_tokens,"
        " sum(completion_tokens) AS completion_tokens,"
        " sum(cost_usd) AS cost_usd,"
        " percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_latency_ms,"
        " percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,"
        " percentile_disc(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS p50_ttft_ms,"
        " percentile_disc(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS p95_ttft_ms,"
        " avg(tokens_per_s) AS avg_tokens_per_s"
        " FROM llmtap.exchange{where}"
    ).format(where=where_clause(_range_conditions(since, until)))
    rows = await fetch_all(conn, query)
    return rows[0]


async def overview_series(
    conn: Connection,
    since: datetime,
    until: datetime | None,
    bucket_s: int,
) -> list[dict[str, Any]]:
    """Return per-bucket counts, tokens, cost and latency for a range, oldest first."""
    query = sql.SQL(
        "SELECT date_bin(make_interval(secs => {bucket}), started_at, {origin})"
        " AS bucket,"
        " count(*) AS exchanges,"
        " count(*) FILTER (WHERE outcome <> 'success') AS errors,"
        " coalesce(sum(prompt_tokens), 0) AS prompt_tokens,"
        " coalesce(sum(completion_tokens), 0) AS completion_tokens,"
        " coalesce(sum(cost_usd), 0) AS cost_usd,"
        " percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_latency_ms,"
        " percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,"
        " percentile_disc(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS p50_ttft_ms,"
        " avg(tokens_per_s) AS avg_tokens_per_s"
        " FROM llmtap.exchange{where} GROUP BY 1 ORDER BY 1"
    ).format(
        bucket=bucket_s,
        origin=since,
        where=where_clause(_range_conditions(since, until)),
    )
    return await fetch_all(conn, query)


async def first_started(conn: Connection) -> datetime | None:
    """Return the start time of the oldest exchange, or None when there is none."""
    query = sql.SQL(
        "SELECT started_at FROM llmtap.exchange ORDER BY started_at, id LIMIT 1"
    )
    rows = await fetch_all(conn, query)
    return rows[0]["started_at"] if rows else None


# Grouping columns of the per-group lists; the values are column names, never
# request input, so they can be composed into the query as identifiers.
GROUPS = {"model": "model", "user": "user_id"}

P95_COLUMN = (
    " percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_latency_ms,"
)


async def list_groups(
    conn: Connection,
    group: str,
    since: datetime | None,
    until: datetime | None,
    limit: int = 100,
    with_p95: bool = True,
) -> list[dict[str, Any]]:
    """Return one row per model or user in a range, busiest first.

    User rows also carry the user's latest user_name. Without with_p95 the p95
    latency is left out, which spares a sort per group.
    """
    column = sql.Identifier(GROUPS[group])
    conditions = _range_conditions(since, until)
    conditions.append(sql.SQL("{} IS NOT NULL").format(column))

    query = sql.SQL(
        "SELECT {column} AS key, count(*) AS exchanges,"
        " count(*) FILTER (WHERE outcome <> 'success') AS errors,"
        " sum(prompt_tokens) AS prompt_tokens,"
        " sum(completion_tokens) AS completion_tokens,"
        " sum(cost_usd) AS cost_usd,"
        " avg(latency_ms) AS avg_latency_ms,"
        "{p95} min(started_at) AS first_seen, max(started_at) AS last_seen"
        " FROM llmtap.exchange{where} GROUP BY {column}"
        " ORDER BY exchanges DESC, key LIMIT {limit}"
    ).format(
        column=column,
        p95=sql.SQL(P95_COLUMN if with_p95 else ""),
        where=where_clause(conditions),
        limit=max(1, min(limit, MAX_PAGE_SIZE)),
    )
    rows = await fetch_all(conn, query)
    if group == "user" and rows:
        names = await user_names(conn, [row["key"] for row in rows])
        for row in rows:
            row["user_name"] = names.get(row["key"])
    return rows


async def user_names(conn: Connection, user_ids: list[str]) -> dict[str, str | None]:
    """Return the user_name of each user's latest exchange, one index probe each."""
    query = sql.SQL(
        "SELECT u.user_id, latest.user_name FROM unnest({ids}::text[]) AS u(user_id)"
        " CROSS JOIN LATERAL (SELECT user_name FROM llmtap.exchange e"
        "  WHERE e.user_id = u.user_id"
        "  ORDER BY e.started_at DESC LIMIT 1) AS latest"
    ).format(ids=user_ids)
    rows = await fetch_all(conn, query)
    return {row["user_id"]: row["user_name"] for row in rows}


async def list_outcomes(
    conn: Connection, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """Return the count of each failed outcome and error kind in a range."""
    conditions = _range_conditions(since, until)
    conditions.append(sql.SQL("outcome <> 'success'"))
    query = sql.SQL(
        "SELECT outcome, error_kind, http_status, count(*) AS exchanges"
        " FROM llmtap.exchange{where} GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 20"
    ).format(where=where_clause(conditions))
    return await fetch_all(conn, query)


# Upper bound on the exchanges shown for one session; longer sessions are cut.
SESSION_EXCHANGE_LIMIT = 1000


async def list_session_exchanges(
    conn: Connection, session_id: str
) -> list[dict[str, Any]]:
    """Return the summaries of one session's exchanges, oldest first."""
    query = sql.SQL(
        "SELECT {columns} FROM llmtap.exchange WHERE session_id = {session}"
        " ORDER BY started_at, id LIMIT {limit}"
    ).format(
        columns=sql.SQL(", ").join(sql.SQL(c) for c in SUMMARY_COLUMNS),
        session=session_id,
        limit=SESSION_EXCHANGE_LIMIT,
    )
    return await fetch_all(conn, query)
