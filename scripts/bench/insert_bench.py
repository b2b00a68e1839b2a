"""Time the recorder's INSERT with the summary triggers on and off.

Usage (as root, like the appliance's boot step):

    .venv/bin/python -m scripts.bench.insert_bench --batch 50 --batch 500

It makes a PostgreSQL cluster as scripts.bench.dashboard_bench does, then
inserts 20 000 generated exchanges in batches with app.store.writer's own
statement, one commit per batch, twice with the triggers and twice without,
and prints the rows per second of each pass.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import psycopg

from app.store.db import conninfo
from app.store.writer import INSERT
from scripts.bench.dashboard_bench import COPY_COLUMNS, Cluster, generated_rows

ROWS = 20_000
# Columns the generated rows leave out but the table requires.
DEFAULTS = {
    "request_truncated": False,
    "response_truncated": False,
    "request_omitted": False,
    "response_omitted": False,
    "sanitized": False,
    "notes": [],
}


def json_rows(count: int) -> list[str]:
    """Return count generated exchanges as the JSON objects the writer sends."""
    rows = []
    for values in generated_rows(count):
        row: dict[str, Any] = dict(zip(COPY_COLUMNS, values, strict=True))
        for name in ("properties", "request_body", "timeline"):
            row[name] = json.loads(row[name])
        rows.append(json.dumps(row | DEFAULTS, default=str))
    return rows


def rate(conn: psycopg.Connection[Any], rows: list[str], batch: int) -> float:
    """Insert rows in batches, one commit each; return the rows per second."""
    conn.execute("TRUNCATE llmtap.exchange")
    conn.commit()

    began = time.perf_counter()
    for start in range(0, len(rows), batch):
        payload = "[" + ",".join(rows[start : start + batch]) + "]"
        conn.execute(INSERT, (payload,))
        conn.commit()
    return len(rows) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, action="append", default=[])
    batches = parser.parse_args().batch or [50, 500]

    rows = json_rows(ROWS)
    cluster = Cluster()
    try:
        settings = cluster.start()
        with psycopg.connect(conninfo(settings, "superuser")) as conn:
            for batch in batches:
                for triggers in ("ENABLE", "DISABLE", "ENABLE", "DISABLE"):
                    conn.execute(f"ALTER TABLE llmtap.exchange {triggers} TRIGGER USER")
                    per_s = rate(conn, rows, batch)
                    state = "on" if triggers == "ENABLE" else "off"
                    print(f"batch {batch}: triggers {state}: {per_s:.0f} rows/s")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
