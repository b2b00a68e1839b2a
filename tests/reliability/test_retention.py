"""Retention by age and by table size, against a stack of its own."""

from __future__ import annotations

import time

import pytest

from tests.cases.helpers import Stage, log_offset, log_since
from tests.support.appliance import Appliance
from tests.support.summaries import PAIRS, summary_mismatches
from tests.support.upstream import ScriptedUpstream

from .helpers import (
    Load,
    Outcome,
    migrated_appliance,
    ok_ids,
    play_load_scripts,
    restart_proxy,
    wait_stored,
)

MIB = 1024 * 1024
# Enough rows that the clean-up takes several batches of 5000.
OLD_ROWS = 22_000
RECENT_ROWS = 300
MAX_AGE_DAYS = 7
SIZE_LIMIT_BYTES = 24 * MIB
# Rows of about 3 KiB of incompressible text, in request_body, which no index
# covers, so the table's size grows with the row count.
FILLER_ROWS = 16_000
# A request through the proxy may take this long while retention runs.
MAX_LATENCY_S = 1.0

INSERT_ROWS = """
    INSERT INTO llmtap.exchange
        (id, started_at, method, path, endpoint, outcome, request_body)
    SELECT gen_random_uuid(), now() - %s::interval - i * interval '1 second',
           'POST', '/v1/chat/completions', 'openai.chat', 'success',
           CASE WHEN %s THEN to_jsonb((
               SELECT string_agg(md5(random()::text || i || j), '')
               FROM generate_series(1, 96) AS j
           )) END
    FROM generate_series(1, %s) AS i
"""


def insert_rows(
    appliance: Appliance, count: int, age: str, filler: bool = False
) -> None:
    """Insert `count` rows as the superuser, started `age` ago and one second apart."""
    appliance.query(INSERT_ROWS, age, filler, count)


def count_rows(appliance: Appliance, where: str = "true") -> int:
    rows = appliance.query(f"SELECT count(*) AS n FROM llmtap.exchange WHERE {where}")
    return int(rows[0]["n"])


def wait_count(
    appliance: Appliance, where: str, expected: int, timeout_s: float
) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        found = count_rows(appliance, where)
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def wait_budget(appliance: Appliance, budget: int) -> None:
    """Wait until the filler rows are down to the row budget."""
    # The load's rows count against the budget too, so the filler left over
    # falls to the budget or below once the first run is done.
    deadline = time.monotonic() + 30
    while count_rows(appliance, "user_id IS NULL") > budget * 1.02:
        assert time.monotonic() < deadline, "the size limit deleted too little"
        time.sleep(0.2)
    time.sleep(1)


def sent_after(outcomes: list[Outcome], moment: float) -> list[Outcome]:
    """Return the outcomes of requests sent after `moment` (time.monotonic())."""
    return [o for o in outcomes if o.finished_at - o.seconds >= moment]


def assert_load_answered(load_outcomes: list[Outcome]) -> None:
    assert load_outcomes, "no request was sent while retention ran"
    failed = [o for o in load_outcomes if o.status != 200]
    assert not failed, f"{len(failed)} requests failed, first: {failed[0]}"
    slowest = max(o.seconds for o in load_outcomes)
    assert slowest < MAX_LATENCY_S, f"slowest request took {slowest:.2f}s"


def test_age_limit_deletes_old_rows(upstream: ScriptedUpstream, stage: Stage) -> None:
    """Exchanges past the age limit go in batches, and newer ones and traffic stay."""
    settings = {"retention_max_age_days": str(MAX_AGE_DAYS)}
    with migrated_appliance(upstream.url, **settings) as appliance:
        insert_rows(appliance, OLD_ROWS, f"{MAX_AGE_DAYS + 3} days")
        insert_rows(appliance, RECENT_ROWS, f"{MAX_AGE_DAYS - 1} days")
        plain, stream = play_load_scripts(stage)
        load = Load(appliance.proxy_url, plain, stream, concurrency=4)
        offset = log_offset(appliance)

        # The schedule's first run comes right after the proxy starts, so the
        # load runs across the restart and only requests sent after it count.
        with load.background():
            restart_proxy(appliance)
            back_at = time.monotonic()
            old_left = wait_count(
                appliance, f"started_at < now() - interval '{MAX_AGE_DAYS} days'", 0, 30
            )
            time.sleep(1)
        outcomes = sent_after(load.outcomes, back_at)
        ids = ok_ids(outcomes)
        counts = wait_stored(appliance, ids)
        log = log_since(appliance, offset)

        assert old_left == 0
        assert count_rows(appliance, "user_id IS NULL") == RECENT_ROWS
        assert summary_mismatches(appliance) == dict.fromkeys(PAIRS, 0)
        assert_load_answered(outcomes)
        assert len(counts) == len(ids)
        assert "retention deleted exchanges count=" in log
        assert "Traceback" not in log


def test_size_limit_keeps_newest(upstream: ScriptedUpstream, stage: Stage) -> None:
    """Over the size limit the oldest rows go down to a budget, once.

    PostgreSQL keeps the table's files at their size after a delete, so a
    later run must keep the row count at the budget instead of deleting again.
    """
    settings = {"retention_max_db_bytes": str(SIZE_LIMIT_BYTES)}
    with migrated_appliance(upstream.url, **settings) as appliance:
        insert_rows(appliance, FILLER_ROWS, "1 day", filler=True)
        total = appliance.query(
            "SELECT pg_total_relation_size('llmtap.exchange') AS bytes"
        )[0]["bytes"]
        newest = appliance.query(
            "SELECT min(started_at) AS edge FROM (SELECT started_at FROM"
            " llmtap.exchange ORDER BY started_at DESC LIMIT 1000) AS newest"
        )[0]["edge"]
        budget = int(FILLER_ROWS * 0.9 * SIZE_LIMIT_BYTES / total)
        plain, stream = play_load_scripts(stage)
        load = Load(appliance.proxy_url, plain, stream, concurrency=4)
        offset = log_offset(appliance)

        with load.background():
            restart_proxy(appliance)
            back_at = time.monotonic()
            wait_budget(appliance, budget)
        all_outcomes = load.outcomes
        outcomes = sent_after(all_outcomes, back_at)
        ids = ok_ids(all_outcomes)
        wait_stored(appliance, ids)
        restart_proxy(appliance)
        stored_budget = appliance.query(
            "SELECT budget_rows FROM llmtap.retention_state"
        )[0]["budget_rows"]
        after_second = wait_count(appliance, "true", stored_budget, timeout_s=10)
        kept_newest = count_rows(appliance, f"started_at >= '{newest.isoformat()}'")
        kept_traffic = count_rows(appliance, "user_id IS NOT NULL")
        log = log_since(appliance, offset)

        assert total > SIZE_LIMIT_BYTES, "the filler did not exceed the limit"
        assert stored_budget == pytest.approx(budget, rel=0.02)
        assert after_second == stored_budget
        assert kept_newest >= 1000
        assert kept_traffic == len(ids)
        assert_load_answered(outcomes)
        assert "Traceback" not in log
