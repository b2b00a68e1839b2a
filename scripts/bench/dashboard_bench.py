"""Time the dashboard's pages over a generated database of N exchanges.

Usage (as root, like the appliance's boot step):

    .venv/bin/python -m scripts.bench.dashboard_bench --rows 100000 --rows 1000000

For each size the script creates a PostgreSQL cluster in a temporary directory
with app.boot's own steps and runs the migrations. It fills llmtap.exchange by
COPY with generated exchanges spread over the last 30 days and runs VACUUM
ANALYZE. Then, for each page, it:

- times the page at the server: the FastAPI app is called in-process over
  ASGI, so the time covers the queries, the Python work and the template, but
  no network;
- runs EXPLAIN on each query the page sends and reports whether the plan reads
  an index.

It prints one table per size, with medians of --runs runs, and stops the
cluster by its pid when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
from psycopg import sql

from app import boot
from app.settings import Settings, get_settings
from app.store import queries
from app.store.db import conninfo

SPAN = timedelta(days=30)
MODELS = [f"model-{n}" for n in range(8)]
USERS = [f"user-{n}" for n in range(200)]
TEAMS = ["red", "green", "blue", "amber", "violet"]
PATHS = ["/v1/chat/completions", "/api/chat", "/v1/completions", "/api/generate"]
FAILURES = [
    "upstream_http_error",
    "in_stream_error",
    "upstream_timeout",
    "client_disconnected",
]
WORDS = (
    "the model answer prompt token stream latency cache vector search index table "
    "whale ocean harbor river mountain forest garden kitchen recipe travel budget "
    "invoice contract summary email draft poem story lesson physics history python "
    "rust query schema deploy cluster kernel network packet route error retry"
).split()
COPY_COLUMNS = (
    "id", "started_at", "recorded_at", "method", "path", "endpoint", "is_stream",
    "model", "http_status", "upstream_status", "outcome", "error_kind",
    "prompt_tokens", "completion_tokens", "total_tokens", "usage_source", "cost_usd",
    "latency_ms", "ttft_ms", "tokens_per_s", "user_id", "session_id", "session_path",
    "properties", "request_body", "prompt_text", "response_text", "timeline",
    "target_url",
)  # fmt: skip


def words(generator: random.Random, low: int, high: int) -> str:
    return " ".join(generator.choices(WORDS, k=generator.randint(low, high)))


def generated_rows(count: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """Yield count exchanges shaped like real chat traffic, oldest to newest."""
    generator = random.Random(seed)
    now = datetime.now(UTC)
    start = now - SPAN
    step = SPAN / count
    for number in range(count):
        yield _row(generator, start + step * number, number)


def _row(generator: random.Random, started: datetime, number: int) -> tuple[Any, ...]:
    failed = generator.random() < 0.05
    prompt = words(generator, 8, 40)
    answer = None if failed else words(generator, 20, 120)
    prompt_tokens, completion_tokens = (
        generator.randint(20, 2000),
        generator.randint(5, 800),
    )
    latency = generator.lognormvariate(7, 0.6)
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
    timeline = [[round(latency * i / 10, 1), 40, "content"] for i in range(10)]
    return (
        uuid.UUID(int=generator.getrandbits(128), version=4),
        started,
        started + timedelta(milliseconds=latency),
        "POST",
        generator.choice(PATHS),
        "openai.chat",
        True,
        generator.choice(MODELS),
        502 if failed else 200,
        502 if failed else 200,
        generator.choice(FAILURES) if failed else "success",
        "upstream_error" if failed else None,
        prompt_tokens,
        completion_tokens,
        prompt_tokens + completion_tokens,
        "reported",
        round(prompt_tokens * 1e-7 + completion_tokens * 4e-7, 10),
        latency,
        latency / 8,
        completion_tokens / (latency / 1000),
        generator.choice(USERS),
        f"chat-{number // 10}",
        "/turn",
        json.dumps({"team": generator.choice(TEAMS)}),
        json.dumps(body),
        prompt[:500],
        answer,
        json.dumps(timeline),
        "http://127.0.0.1:11434",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A PostgreSQL cluster made with app.boot's steps, in a temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llmtap-dashboard-bench-"))
        self.root.chmod(0o755)
        # app.boot and the alembic environment read their settings from here.
        os.environ["LLMTAP_DATA_DIR"] = str(self.root / "data")
        os.environ["LLMTAP_POSTGRES_PORT"] = str(free_port())
        get_settings.cache_clear()
        self.settings = get_settings()
        self.server: Any = None

    def start(self) -> Settings:
        app_user = boot.ensure_user(boot.APP_USER)
        pg_user = pwd.getpwnam(boot.PG_USER)
        boot.make_directories(self.settings, app_user, pg_user)
        boot.create_secrets(self.settings, app_user)
        pg_bin = boot.find_pg_bin()
        boot.initialise_cluster(self.settings, pg_bin, pg_user)
        self.server = boot.start_temporary_server(self.settings, pg_bin, pg_user)

        from app.migrate import migrate_schema

        print("  migrations:", "; ".join(migrate_schema(self.settings)))
        return self.settings

    def stop(self) -> None:
        if self.server is not None:
            self.server.terminate()
            self.server.wait(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def fill(settings: Settings, count: int) -> float:
    """COPY count generated exchanges into the table; return the seconds it took."""
    began = time.perf_counter()
    with psycopg.connect(conninfo(settings, "superuser")) as conn:
        columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
        statement = sql.SQL("COPY llmtap.exchange ({}) FROM STDIN").format(columns)
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in generated_rows(count):
                copy.write_row(row)
    with psycopg.connect(conninfo(settings, "superuser"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE llmtap.exchange")
    return time.perf_counter() - began


class RecordingConnection:
    """A connection that keeps the text of every statement it runs."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], statements: list[str]
    ) -> None:
        self._conn = conn
        self._statements = statements

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else query.as_string(self._conn)
        self._statements.append(text)
        return await self._conn.execute(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def recording_pool(settings: Settings) -> Any:
    """Return the app's pool, changed to record each statement the pages send."""
    from contextlib import asynccontextmanager

    from app.web.app import _web_conninfo
    from app.web.pool import ConnectionPool

    class RecordingPool(ConnectionPool):
        statements: list[str] = []

        @asynccontextmanager
        async def connection(self) -> Any:  # type: ignore[override]
            async with super().connection() as conn:
                yield RecordingConnection(conn, self.statements)

    return RecordingPool(lambda: _web_conninfo(settings))


def bench_pages(settings: Settings) -> dict[str, str]:
    """Return the page paths to time: list, filters, detail and aggregate pages."""
    with psycopg.connect(conninfo(settings, "superuser")) as conn:
        middle = conn.execute(
            "SELECT id, started_at FROM llmtap.exchange"
            " ORDER BY started_at DESC, id DESC OFFSET 5000 LIMIT 1"
        ).fetchone()
        session = conn.execute(
            "SELECT session_id FROM llmtap.exchange ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    assert middle is not None and session is not None
    cursor = queries.Cursor(middle[1], middle[0]).encode()
    return {
        "exchanges, newest": "/exchanges",
        "exchanges, older page": f"/exchanges?before={cursor}",
        "exchanges, model": "/exchanges?model=model-3",
        "exchanges, user and errors": "/exchanges?user=user-5&errors=1",
        "exchanges, outcome": "/exchanges?outcome=upstream_timeout",
        "exchanges, property": "/exchanges?prop=team&value=blue",
        "exchanges, search": "/exchanges?q=whale+harbor",
        "exchanges, last 24 h": "/exchanges?range=24h",
        "exchange detail": f"/exchanges/{middle[0]}",
        "overview, 24 h (default)": "/",
        "sessions, 24 h (default)": "/sessions",
        "session detail": f"/sessions/{session[0]}",
        "users, 24 h (default)": "/users",
        "models, 24 h (default)": "/models",
        "overview, 7 days": "/?range=7d",
        "overview, 30 days": "/?range=30d",
        "overview, all time": "/?range=all",
        "users, 7 days": "/users?range=7d",
        "users, 30 days": "/users?range=30d",
        "models, all time": "/models?range=all",
        "sessions, 30 days": "/sessions?range=30d",
    }


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def explain(settings: Settings, statements: list[str]) -> tuple[bool, bool]:
    """Return (every statement reads an index, some statement scans the whole table)."""
    all_indexed, any_seq_scan = True, False
    with psycopg.connect(conninfo(settings, "web"), autocommit=True) as conn:
        # The pool's liveness check (SELECT 1) reads no table and is skipped.
        for statement in (s for s in statements if "llmtap.exchange" in s):
            row = conn.execute("EXPLAIN (FORMAT JSON) " + statement).fetchone()
            assert row is not None
            nodes = list(plan_nodes(row[0][0]["Plan"]))
            kinds = {node["Node Type"] for node in nodes}
            all_indexed &= bool(
                kinds & {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
            )
            any_seq_scan |= any(
                node["Node Type"] == "Seq Scan"
                and node.get("Relation Name") == "exchange"
                for node in nodes
            )
    return all_indexed, any_seq_scan


async def time_pages(
    settings: Settings, runs: int
) -> list[tuple[str, str, float, bool, bool]]:
    """Return (page, path, median ms, indexed, seq scan) for each bench page."""
    from app.web.app import create_app

    pool = recording_pool(settings)
    app = create_app(msgspec.structs.replace(settings, dashboard_auth="off"), pool=pool)
    transport = httpx.ASGITransport(app=app)
    results = []
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench"
    ) as client:
        for name, path in bench_pages(settings).items():
            pool.statements.clear()
            response = await client.get(path)
            assert response.status_code == 200, (path, response.status_code)
            statements = list(pool.statements)
            samples = []
            for _ in range(runs):
                began = time.perf_counter()
                await client.get(path)
                samples.append((time.perf_counter() - began) * 1000)
            indexed, seq_scan = explain(settings, statements)
            results.append((name, path, statistics.median(samples), indexed, seq_scan))
    await pool.close()
    return results


def print_table(
    count: int, fill_s: float, results: list[tuple[str, str, float, bool, bool]]
) -> None:
    print(f"\n{count:,} exchanges (filled in {fill_s:.0f} s)\n")
    print("| page | median ms | every query uses an index | full table scan |")
    print("|---|---:|---|---|")
    for name, _, median_ms, indexed, seq_scan in results:
        index_text = "yes" if indexed else "no"
        scan_text = "yes" if seq_scan else "no"
        print(f"| {name} | {median_ms:.1f} | {index_text} | {scan_text} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dashboard_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--rows",
        type=int,
        action="append",
        help="exchanges to generate; repeatable (default 100000)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=7,
        help="timed runs per page; the median is reported (default 7)",
    )
    arguments = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(
            "run as root: the cluster is created and started as the postgres user",
            file=sys.stderr,
        )
        return 2

    for count in arguments.rows or [100_000]:
        cluster = Cluster()
        try:
            settings = cluster.start()
            fill_s = fill(settings, count)
            results = asyncio.run(time_pages(settings, arguments.runs))
            print_table(count, fill_s, results)
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
