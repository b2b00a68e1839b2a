"""Aggregates over a time range, read from the summary tables for long ranges.

Migration 0004 keeps per-hour, per-day and per-session summaries of the
exchanges. A range of SUMMARY_SPAN or longer reads the summary rows from the
first whole hour (or day) of the range on, plus the exchanges of the partial
hour (or day) before it, so totals and counts are exact. Percentiles come from
the summaries' latency histograms and are within 4.5 % of percentile_disc's.
Shorter ranges read the exchanges themselves through app.store.queries, with
exact percentiles and finer chart buckets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from app.store import queries
from app.store.queries import Connection, fetch_all

SUMMARY_SPAN = timedelta(days=2)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Columns of a summary row, each with the expression that makes the same
# column from a single exchange.
COUNT_COLUMNS = {
    "exchanges": "1",
    "errors": "(outcome <> 'success')::integer",
    "prompt_tokens": "prompt_tokens",
    "completion_tokens": "completion_tokens",
    "cost_usd": "cost_usd",
}
HOUR_COLUMNS = COUNT_COLUMNS | {
    "tokens_per_s_sum": "tokens_per_s",
    "tokens_per_s_n": "(tokens_per_s IS NOT NULL)::integer",
    "latency_hist": "llmtap.hist_of(latency_ms)",
    "ttft_hist": "llmtap.hist_of(ttft_ms)",
}
GROUP_COLUMNS = COUNT_COLUMNS | {
    "latency_sum": "latency_ms",
    "latency_n": "(latency_ms IS NOT NULL)::integer",
    "first_seen": "started_at",
    "last_seen": "started_at",
    "latency_hist": "llmtap.hist_of(latency_ms)",
}
FAILURE_COLUMNS = {
    "outcome": "outcome",
    "error_kind": "error_kind",
    "http_status": "http_status",
    "exchanges": "1",
}

# Totals of the summary parts, with each histogram merged once. QUANTILES then
# reads the percentiles from the merged histograms.
TOTALS = (
    "coalesce(sum(exchanges), 0)::bigint AS exchanges,"
    " coalesce(sum(errors), 0)::bigint AS errors,"
    " sum(prompt_tokens) AS prompt_tokens,"
    " sum(completion_tokens) AS completion_tokens,"
    " sum(cost_usd) AS cost_usd,"
    " sum(tokens_per_s_sum) / nullif(sum(tokens_per_s_n), 0) AS avg_tokens_per_s,"
    " llmtap.hist_merge(array_agg(latency_hist)) AS latency,"
    " llmtap.hist_merge(array_agg(ttft_hist)) AS ttft"
)
QUANTILES = (
    "exchanges, errors, prompt_tokens, completion_tokens, cost_usd,"
    " avg_tokens_per_s,"
    " llmtap.hist_quantile(latency, 0.5) AS p50_latency_ms,"
    " llmtap.hist_quantile(latency, 0.95) AS p95_latency_ms,"
    " llmtap.hist_quantile(ttft, 0.5) AS p50_ttft_ms,"
    " llmtap.hist_quantile(ttft, 0.95) AS p95_ttft_ms"
)
GROUP_TOTALS = (
    "sum(exchanges)::bigint AS exchanges,"
    " sum(errors)::bigint AS errors,"
    " sum(prompt_tokens) AS prompt_tokens,"
    " sum(completion_tokens) AS completion_tokens,"
    " sum(cost_usd) AS cost_usd,"
    " sum(latency_sum) / nullif(sum(latency_n), 0) AS avg_latency_ms,"
    " min(first_seen) AS first_seen, max(last_seen) AS last_seen"
)
P95 = (
    ", llmtap.hist_quantile(llmtap.hist_merge(array_agg(latency_hist)), 0.95)"
    " AS p95_latency_ms"
)


def covers(since: datetime | None, until: datetime | None) -> bool:
    """Return True when a range is long enough to read from the summaries."""
    if until is not None:
        return False
    return since is None or datetime.now(UTC) - since >= SUMMARY_SPAN


def _ceil(moment: datetime, step: timedelta) -> datetime:
    """Return the first multiple of step (from the Unix epoch) at or after moment."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = -((epoch - moment) // step)
    return epoch + steps * step


def _parts(
    table: str,
    bucket: str,
    columns: dict[str, str],
    since: datetime | None,
    step: timedelta,
    extra: dict[str, tuple[str, str]] | None = None,
    summary_where: str = "true",
    raw_where: str = "true",
) -> sql.Composed:
    """Return summary rows from the first whole step on, plus the exchanges before.

    extra adds columns that differ by name between the two halves, as
    {name: (summary expression, exchange expression)}.
    """
    every = {name: (name, raw) for name, raw in columns.items()} | (extra or {})
    summary = ", ".join(f"{held} AS {name}" for name, (held, _) in every.items())
    raw = ", ".join(f"{made} AS {name}" for name, (_, made) in every.items())
    if since is None:
        return sql.SQL(
            f"SELECT {summary} FROM llmtap.{table} WHERE {summary_where}"
        ).format()

    edge = _ceil(since, step)
    return sql.SQL(
        f"SELECT {summary} FROM llmtap.{table}"
        f" WHERE {bucket} >= {{edge}} AND {summary_where}"
        f" UNION ALL SELECT {raw} FROM llmtap.exchange"
        f" WHERE started_at >= {{since}} AND started_at < {{edge}} AND {raw_where}"
    ).format(edge=edge, since=since)


async def overview_totals(
    conn: Connection, since: datetime | None, until: datetime | None
) -> dict[str, Any]:
    """Return request, error, token, cost, latency and speed totals for a range."""
    if not covers(since, until):
        return await queries.overview_totals(conn, since, until)

    parts = _parts("summary_hour", "hour", HOUR_COLUMNS, since, HOUR)
    query = sql.SQL(
        "SELECT {quantiles} FROM (SELECT {totals} FROM ({parts}) AS parts) AS merged"
    ).format(quantiles=sql.SQL(QUANTILES), totals=sql.SQL(TOTALS), parts=parts)
    rows = await fetch_all(conn, query)
    return rows[0]


async def overview_series(
    conn: Connection, since: datetime, until: datetime | None, bucket_s: int
) -> list[dict[str, Any]]:
    """Return per-bucket counts, tokens, cost and latency for a range, oldest first.

    From the summaries, bucket_s must be a whole number of hours; see
    bucket_seconds().
    """
    if not covers(since, until):
        return await queries.overview_series(conn, since, until, bucket_s)

    at = {"at": ("hour", "started_at")}
    parts = _parts("summary_hour", "hour", HOUR_COLUMNS, since, HOUR, extra=at)
    query = sql.SQL(
        "SELECT bucket, {quantiles} FROM ("
        " SELECT date_bin(make_interval(secs => {bucket}), at, {origin}) AS bucket,"
        " {totals} FROM ({parts}) AS parts GROUP BY 1"
        ") AS merged ORDER BY 1"
    ).format(
        quantiles=sql.SQL(QUANTILES),
        bucket=bucket_s,
        origin=series_start(since, bucket_s),
        totals=sql.SQL(TOTALS),
        parts=parts,
    )
    return await fetch_all(conn, query)


def bucket_seconds(since: datetime | None, bucket_s: int) -> int:
    """Return the chart bucket for a range: whole hours when summaries serve it."""
    if not covers(since, None):
        return bucket_s
    hour_s = int(HOUR.total_seconds())
    return max(1, -(-bucket_s // hour_s)) * hour_s


def series_start(since: datetime, bucket_s: int) -> datetime:
    """Return the start of the first chart bucket of a range.

    From the summaries, buckets start on whole hours, so that no hour falls
    into two buckets; the first one also contains the partial hour before.
    """
    if not covers(since, None):
        return since
    edge = _ceil(since, HOUR)
    return edge - timedelta(seconds=bucket_s) if edge > since else edge


async def list_groups(
    conn: Connection,
    group: str,
    since: datetime | None,
    until: datetime | None,
    limit: int = 100,
    with_p95: bool = True,
) -> list[dict[str, Any]]:
    """Return one row per model or user in a range, busiest first.

    User rows also carry the user's latest user_name. Without with_p95 the
    p95 latency is left out.
    """
    if not covers(since, until):
        return await queries.list_groups(conn, group, since, until, limit, with_p95)

    column = queries.GROUPS[group]
    parts = _parts(
        "summary_day",
        "day",
        GROUP_COLUMNS,
        since,
        DAY,
        extra={"key": ("key", column)},
        summary_where=f"dimension = '{group}'",
        raw_where=f"{column} IS NOT NULL",
    )
    query = sql.SQL(
        "SELECT key, {totals}{p95} FROM ({parts}) AS parts"
        " GROUP BY key ORDER BY exchanges DESC, key LIMIT {limit}"
    ).format(
        totals=sql.SQL(GROUP_TOTALS),
        p95=sql.SQL(P95 if with_p95 else ""),
        parts=parts,
        limit=max(1, min(limit, queries.MAX_PAGE_SIZE)),
    )
    rows = await fetch_all(conn, query)
    if group == "user" and rows:
        names = await queries.user_names(conn, [row["key"] for row in rows])
        for row in rows:
            row["user_name"] = names.get(row["key"])
    return rows


async def list_outcomes(
    conn: Connection, since: datetime | None, until: datetime | None
) -> list[dict[str, Any]]:
    """Return the count of each failed outcome and error kind in a range."""
    if not covers(since, until):
        return await queries.list_outcomes(conn, since, until)

    parts = _parts(
        "summary_failure_hour",
        "hour",
        FAILURE_COLUMNS,
        since,
        HOUR,
        raw_where="outcome <> 'success'",
    )
    query = sql.SQL(
        "SELECT outcome, error_kind, http_status, sum(exchanges)::bigint AS exchanges"
        " FROM ({parts}) AS parts GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 20"
    ).format(parts=parts)
    return await fetch_all(conn, query)


async def list_sessions(
    conn: Connection, since: datetime | None, limit: int = 100
) -> list[dict[str, Any]]:
    """Return the sessions active since a time, latest first, with whole totals.

    A session's row counts all its exchanges, also those before the range, so a
    long chat shows its full cost.
    """
    active: sql.Composable = sql.SQL("")
    if since is not None:
        active = sql.SQL(" WHERE last_seen >= {}").format(since)
    query = sql.SQL(
        "SELECT session_id AS key, session_name, cardinality(user_ids) AS users,"
        " exchanges, errors, prompt_tokens, completion_tokens, cost_usd,"
        " latency_sum / nullif(latency_n, 0) AS avg_latency_ms,"
        " first_seen, last_seen"
        " FROM llmtap.summary_session{active}"
        " ORDER BY last_seen DESC, session_id DESC LIMIT {limit}"
    ).format(active=active, limit=max(1, min(limit, queries.MAX_PAGE_SIZE)))
    return await fetch_all(conn, query)
