"""PostgreSQL stopped under load, and the spool filling up during an outage."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.cases.helpers import Stage, log_offset, log_since
from tests.support.upstream import ScriptedUpstream

from .helpers import (
    Load,
    MemorySampler,
    Outcome,
    health,
    migrated_appliance,
    ok_ids,
    percentile,
    play_load_scripts,
    read_dropped_file,
    stored_counts,
    supervise,
    wait_stored,
)

# Seconds of load before, during and after the outage.
BEFORE_S = 2
OUTAGE_S = 6
AFTER_S = 2
# The writer backs off up to 10 s between attempts, so a few back-offs more.
ARRIVAL_TIMEOUT_S = 60
# Requests served during an outage may be this much slower than before it at
# the 99th percentile, because the database must add no wait to the hot path.
ADDED_P99_S = 0.25
SMALL_SPOOL_BYTES = 256 * 1024
FLOOD_REQUESTS = 4000
# The proxy and its recorder may grow by this much while thousands of
# exchanges wait on disk; growth with the request count would exceed it.
RSS_GROWTH_KIB = 64 * 1024
# Repeated drop warnings allowed per second of flood, on average.
DROP_WARNINGS_PER_S = 1.0


@dataclass
class OutageRun:
    """What load across a PostgreSQL stop and start left behind."""

    baseline: list[Outcome]
    outcomes: list[Outcome]
    counts: dict[str, int]
    log: str


@pytest.fixture(scope="module")
def outage_run(upstream: ScriptedUpstream) -> Iterator[OutageRun]:
    with migrated_appliance(upstream.url) as appliance:
        plain, stream = play_load_scripts(Stage(upstream))
        baseline = Load(appliance.proxy_url, plain, stream).run(400)
        offset = log_offset(appliance)

        load = Load(appliance.proxy_url, plain, stream)
        with load.background():
            time.sleep(BEFORE_S)
            supervise(appliance, "stop", "postgres")
            time.sleep(OUTAGE_S)
            supervise(appliance, "start", "postgres")
            time.sleep(AFTER_S)
        outcomes = load.outcomes
        counts = wait_stored(appliance, ok_ids(outcomes), ARRIVAL_TIMEOUT_S)
        yield OutageRun(baseline, outcomes, counts, log_since(appliance, offset))


def test_outage_under_load_stores_each_once(outage_run: OutageRun) -> None:
    """Requests are served as usual while PostgreSQL is down, and stored once."""
    outcomes = outage_run.outcomes
    ids = ok_ids(outcomes)
    failed = [o for o in outcomes if o.status != 200]
    before_p99 = percentile([o.seconds for o in outage_run.baseline], 0.99)
    during_p99 = percentile([o.seconds for o in outcomes], 0.99)

    assert not failed, f"{len(failed)} requests failed, first: {failed[0]}"
    assert len(outcomes) > 100
    assert during_p99 <= before_p99 + ADDED_P99_S
    assert len(set(ids)) == len(ids)
    assert len(outage_run.counts) == len(ids), (
        f"{len(ids) - len(outage_run.counts)} never stored"
    )
    assert set(outage_run.counts.values()) == {1}
    assert "database write failed" in outage_run.log
    assert "database writes resumed" in outage_run.log
    assert "Traceback" not in outage_run.log


def test_outage_logs_each_exchange_once(outage_run: OutageRun) -> None:
    """Each exchange gets exactly one INFO line, however often its write is retried."""
    lines = Counter(
        line.split("exchange id=", 1)[1].split(" ", 1)[0]
        for line in outage_run.log.splitlines()
        if " exchange id=" in line
    )
    ids = ok_ids(outage_run.outcomes)
    repeated = [exchange_id for exchange_id in ids if lines[exchange_id] > 1]
    missing = [exchange_id for exchange_id in ids if lines[exchange_id] == 0]

    assert not missing, f"{len(missing)} exchanges have no INFO line"
    assert not repeated, f"{len(repeated)} exchanges logged more than once"


@dataclass
class Flood:
    """What a flood of requests during an outage left behind, with a small spool."""

    outcomes: list[Outcome]
    seconds: float
    dropped: dict[str, object] | None
    reported: dict[str, object]
    spool_bytes: int
    log: str
    counts: dict[str, int]
    newest: list[str]
    first_rss_kib: int
    peak_rss_kib: int


@pytest.fixture(scope="module")
def flood(upstream: ScriptedUpstream) -> Iterator[Flood]:
    settings = {"spool_max_bytes": str(SMALL_SPOOL_BYTES)}
    with migrated_appliance(upstream.url, **settings) as appliance:
        plain, stream = play_load_scripts(Stage(upstream))
        warmup = Load(appliance.proxy_url, plain, stream).run(200)
        # A warm-up exchange still in the spool at the stop could be dropped
        # during the flood and break the count of flood exchanges below.
        wait_stored(appliance, ok_ids(warmup), ARRIVAL_TIMEOUT_S)
        supervise(appliance, "stop", "postgres")
        offset = log_offset(appliance)

        with MemorySampler(appliance) as memory:
            started = time.monotonic()
            outcomes = Load(appliance.proxy_url, plain, stream).run(FLOOD_REQUESTS)
            seconds = time.monotonic() - started
            time.sleep(1)
        dropped = read_dropped_file(appliance)
        reported = health(appliance)
        spool = (appliance.data_dir / "spool").glob("*.ready")
        spool_bytes = sum(path.stat().st_size for path in spool)
        log = log_since(appliance, offset)

        supervise(appliance, "start", "postgres")
        finished = sorted(outcomes, key=lambda outcome: outcome.finished_at)
        newest = ok_ids(finished)[-20:]
        wait_stored(appliance, newest, ARRIVAL_TIMEOUT_S)
        # The newest arrive last; a moment more lets the writer finish.
        time.sleep(3)
        counts = stored_counts(appliance, ok_ids(outcomes))
        yield Flood(
            outcomes, seconds, dropped, reported, spool_bytes, log, counts, newest,
            memory.samples[0][1], memory.peak_kib,
        )  # fmt: skip


def test_spool_full_drops_oldest(flood: Flood) -> None:
    """A full spool drops the oldest exchanges and counts every one of them."""
    assert len(ok_ids(flood.outcomes)) == FLOOD_REQUESTS
    assert flood.dropped is not None, "dropped.json was not written"
    dropped = int(str(flood.dropped["dropped"]))
    assert dropped > 0
    assert flood.reported["dropped"] == dropped
    assert flood.spool_bytes <= SMALL_SPOOL_BYTES
    assert len(flood.counts) + dropped == FLOOD_REQUESTS
    assert set(flood.counts.values()) == {1}
    assert all(exchange_id in flood.counts for exchange_id in flood.newest)


def test_outage_memory_bounded(flood: Flood) -> None:
    """Thousands of exchanges waiting for the database do not grow the proxy."""
    growth = flood.peak_rss_kib - flood.first_rss_kib

    assert growth <= RSS_GROWTH_KIB, f"RSS grew by {growth} KiB"


def test_drop_warnings_rate_limited(flood: Flood) -> None:
    warnings = flood.log.count("oldest unsent exchanges dropped")

    assert warnings >= 1
    assert warnings <= 1 + flood.seconds * DROP_WARNINGS_PER_S, (
        f"{warnings} drop warnings in {flood.seconds:.0f}s"
    )
