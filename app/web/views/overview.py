"""The overview page: totals, charts over time, top models, users and errors."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.store import queries, summaries
from app.web import filters
from app.web.auth import require_sign_in
from app.web.pool import ConnectionPool
from app.web.templating import render

router = APIRouter(dependencies=[Depends(require_sign_in)])

DEFAULT_RANGE = "24h"

# Bucket width per range, chosen for 48 to 60 points per chart.
BUCKET_S = {"1h": 60, "24h": 1800, "7d": 3 * 3600, "30d": 12 * 3600}
ALL_TIME_POINTS = 60

SERIES = (
    "exchanges",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "p50_latency_ms",
    "p95_latency_ms",
    "p50_ttft_ms",
    "avg_tokens_per_s",
)


@router.get("/")
async def overview_page(request: Request) -> Response:
    range_value = request.query_params.get("range") or DEFAULT_RANGE
    since = filters.range_start(range_value)
    until = datetime.now(UTC)

    pool = request.app.state.pool
    if since is None:
        first = await _query(pool, queries.first_started)
        since = first or until - timedelta(hours=1)
    bucket_s = BUCKET_S.get(range_value) or _all_time_bucket(since, until)
    bucket_s = summaries.bucket_seconds(since, bucket_s)

    # Each query runs on its own connection, so they run side by side on the
    # database's cores instead of one after another.
    totals, series, models, users, outcomes = await asyncio.gather(
        _query(pool, summaries.overview_totals, since, None),
        _query(pool, summaries.overview_series, since, None, bucket_s),
        _query(pool, summaries.list_groups, "model", since, None, 10, False),
        _query(pool, summaries.list_groups, "user", since, None, 10, False),
        _query(pool, summaries.list_outcomes, since, None),
    )

    return render(
        request,
        "overview.html",
        range_value=range_value,
        ranges=filters.RANGES,
        totals=totals,
        chart=chart_data(
            series, summaries.series_start(since, bucket_s), until, bucket_s
        ),
        models=models,
        users=users,
        outcomes=outcomes,
    )


async def _query(pool: ConnectionPool, function: Callable[..., Any], *args: Any) -> Any:
    async with pool.connection() as conn:
        return await function(conn, *args)


def _all_time_bucket(since: datetime, until: datetime) -> int:
    span_s = (until - since).total_seconds()
    return max(60, int(span_s / ALL_TIME_POINTS))


def chart_data(
    series: list[dict[str, Any]], since: datetime, until: datetime, bucket_s: int
) -> dict[str, list[Any]]:
    """Return column arrays for the charts, with empty buckets filled in.

    Counts, tokens and cost of an empty bucket are 0; latencies stay null so the
    charts show a gap instead of a false zero.
    """
    by_bucket = {int(row["bucket"].timestamp()): row for row in series}
    start = int(since.timestamp())
    times = list(range(start, int(until.timestamp()) + 1, bucket_s))
    columns: dict[str, list[Any]] = {"time": times}
    for name in SERIES:
        empty = None if "latency" in name or "ttft" in name or "per_s" in name else 0
        values = []
        for time in times:
            value = by_bucket.get(time, {}).get(name, empty)
            values.append(float(value) if value is not None else None)
        columns[name] = values
    return columns
