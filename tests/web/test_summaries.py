"""The summary tables against the exchanges they summarise, in the real database.

Each test inserts generated exchanges over two weeks in one REPEATABLE READ
transaction and rolls it back at the end, so the other tests never see them and
rows the recorder commits meanwhile never change what the test reads.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.rows import dict_row

from app.store import queries, summaries
from tests.support.summaries import GENERATED_EXCHANGES, PAIRS, mismatch_query

Connection = psycopg.AsyncConnection[Any]

ROWS = 3000


def in_rolled_back_transaction(
    appliance: Any, check: Callable[[Connection], Awaitable[None]]
) -> None:
    """Run check after inserting the generated exchanges, then roll back."""

    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(
            appliance.conninfo(), row_factory=dict_row
        )
        try:
            await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            await conn.execute(GENERATED_EXCHANGES, (ROWS,))
            await check(conn)
        finally:
            await conn.rollback()
            await conn.close()

    # Playwright's sync API keeps an event loop running in this thread once a
    # browser test ran, so the coroutine gets a thread and a loop of its own.
    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(asyncio.run, run()).result()


async def mismatches(conn: Connection) -> dict[str, int]:
    """Return, per summary table, how many rows differ from the exchanges."""
    found = {}
    for table in PAIRS:
        rows = await (await conn.execute(mismatch_query(table))).fetchall()
        found[table] = rows[0]["n"]
    return found


def close(found: Any, exact: Any, tolerance: float = 0.05) -> bool:
    if found is None or exact is None:
        return found is exact
    return math.isclose(float(found), float(exact), rel_tol=tolerance)


def test_summaries_follow_inserts_and_deletes(appliance: Any) -> None:
    async def check(conn: Connection) -> None:
        assert await mismatches(conn) == dict.fromkeys(PAIRS, 0)

        # As retention does: the oldest exchanges go, so partial days remain.
        await conn.execute(
            "DELETE FROM llmtap.exchange WHERE id IN (SELECT id FROM llmtap.exchange"
            " ORDER BY started_at LIMIT 500)"
        )
        assert await mismatches(conn) == dict.fromkeys(PAIRS, 0)

    in_rolled_back_transaction(appliance, check)


def test_truncate_clears_summaries(appliance: Any) -> None:
    async def check(conn: Connection) -> None:
        await conn.execute("TRUNCATE llmtap.exchange")
        for table in PAIRS:
            cursor = await conn.execute(f"SELECT count(*) AS n FROM llmtap.{table}")
            assert (await cursor.fetchone())["n"] == 0

    in_rolled_back_transaction(appliance, check)


def test_long_range_totals_match(appliance: Any) -> None:
    since = datetime.now(UTC) - timedelta(days=7, minutes=17)
    assert summaries.covers(since, None)

    async def check(conn: Connection) -> None:
        summed = await summaries.overview_totals(conn, since, None)
        exact = await queries.overview_totals(conn, since, None)

        for name in ("exchanges", "errors", "prompt_tokens", "completion_tokens"):
            assert summed[name] == exact[name], name
        assert summed["cost_usd"] == exact["cost_usd"]
        for name in ("p50_latency_ms", "p95_latency_ms", "p50_ttft_ms"):
            assert close(summed[name], exact[name]), name
        assert close(summed["avg_tokens_per_s"], exact["avg_tokens_per_s"], 1e-9)

        outcomes = await summaries.list_outcomes(conn, since, None)
        assert outcomes == await queries.list_outcomes(conn, since, None)

    in_rolled_back_transaction(appliance, check)


def test_long_range_groups_match(appliance: Any) -> None:
    since = datetime.now(UTC) - timedelta(days=9, hours=5)

    async def check(conn: Connection) -> None:
        for group in ("model", "user"):
            summed = await summaries.list_groups(conn, group, since, None)
            exact = await queries.list_groups(conn, group, since, None)

            assert [row["key"] for row in summed] == [row["key"] for row in exact]
            for got, want in zip(summed, exact, strict=True):
                for name in ("exchanges", "errors", "prompt_tokens", "cost_usd"):
                    assert got[name] == want[name], (group, name)
                assert got["first_seen"] == want["first_seen"]
                assert got["last_seen"] == want["last_seen"]
                assert close(got["avg_latency_ms"], want["avg_latency_ms"], 1e-9)
                assert close(got["p95_latency_ms"], want["p95_latency_ms"])
                assert got.get("user_name") == want.get("user_name")

    in_rolled_back_transaction(appliance, check)


def test_series_buckets_start_on_hours(appliance: Any) -> None:
    since = datetime.now(UTC) - timedelta(days=7, minutes=17)
    bucket_s = summaries.bucket_seconds(since, 3 * 3600)

    async def check(conn: Connection) -> None:
        series = await summaries.overview_series(conn, since, None, bucket_s)
        totals = await queries.overview_totals(conn, since, None)

        start = summaries.series_start(since, bucket_s)
        assert start <= since
        assert start.minute == 0
        assert start.second == 0
        assert all(
            (row["bucket"] - start).total_seconds() % bucket_s == 0 for row in series
        )
        assert sum(row["exchanges"] for row in series) == totals["exchanges"]

    in_rolled_back_transaction(appliance, check)


def test_sessions_list_shows_whole_sessions(appliance: Any) -> None:
    since = datetime.now(UTC) - timedelta(days=1)

    async def check(conn: Connection) -> None:
        rows = await summaries.list_sessions(conn, since, limit=500)
        ours = [row for row in rows if row["key"].startswith("summary-session-")]

        last_seen = [row["last_seen"] for row in rows]
        assert last_seen == sorted(last_seen, reverse=True)
        assert all(row["last_seen"] >= since for row in rows)
        # A session that began before the range still counts all its exchanges.
        cursor = await conn.execute(
            "SELECT session_id, count(*) AS n FROM llmtap.exchange"
            " WHERE session_id LIKE 'summary-session-%' GROUP BY 1"
        )
        counts = {row["session_id"]: row["n"] for row in await cursor.fetchall()}
        assert ours
        assert all(row["exchanges"] == counts[row["key"]] for row in ours)
        assert any(row["first_seen"] < since for row in ours)

    in_rolled_back_transaction(appliance, check)
