"""A bounded soak: tens of thousands of exchanges with a database outage inside.

Run it alone to see the numbers:

    CI=true .venv/bin/python -m pytest -s tests/reliability/test_soak.py

LLMTAP_SOAK_EXCHANGES sets the number of exchanges (20 000 by default).
"""

from __future__ import annotations

import os
import threading
import time

from tests.cases.helpers import Stage, log_offset, log_since
from tests.support.appliance import Appliance
from tests.support.upstream import ScriptedUpstream

from .helpers import (
    Load,
    MemorySampler,
    migrated_appliance,
    ok_ids,
    percentile,
    play_load_scripts,
    supervise,
    wait_stored,
)

EXCHANGES = int(os.environ.get("LLMTAP_SOAK_EXCHANGES", "20000"))
OUTAGE_AFTER_S = 15
OUTAGE_S = 20
ARRIVAL_TIMEOUT_S = 120
# Growth allowed from the first sample to the peak, and from the steady
# middle of the run to its end. A leak per exchange would exceed both.
PEAK_GROWTH_KIB = 96 * 1024
LATE_GROWTH_KIB = 32 * 1024


def outage(appliance: Appliance, stopped: threading.Event) -> None:
    """Stop PostgreSQL OUTAGE_AFTER_S into the run, for OUTAGE_S seconds."""
    if stopped.wait(OUTAGE_AFTER_S):
        return
    supervise(appliance, "stop", "postgres")
    stopped.wait(OUTAGE_S)
    supervise(appliance, "start", "postgres")


def test_soak_with_outage(upstream: ScriptedUpstream, stage: Stage) -> None:
    """Every exchange of a long run with an outage is served and stored once."""
    with migrated_appliance(upstream.url) as appliance:
        plain, stream = play_load_scripts(stage)
        offset = log_offset(appliance)
        done = threading.Event()
        breaker = threading.Thread(target=outage, args=(appliance, done))

        with MemorySampler(appliance, interval_s=1.0) as memory:
            started = time.monotonic()
            breaker.start()
            outcomes = Load(appliance.proxy_url, plain, stream).run(EXCHANGES)
            seconds = time.monotonic() - started
            done.set()
            breaker.join(OUTAGE_S + 30)
            ids = ok_ids(outcomes)
            counts = wait_stored(appliance, ids, timeout_s=ARRIVAL_TIMEOUT_S)
        log = log_since(appliance, offset)

        samples = [rss for _, rss in memory.samples]
        middle = samples[len(samples) // 3 : len(samples) // 3 + 5]
        late_growth = max(samples[-5:]) - max(middle)
        latencies = [o.seconds for o in outcomes]
        print(
            f"\nsoak: exchanges={len(outcomes)} seconds={seconds:.1f}"
            f" rate={len(outcomes) / seconds:.0f}/s"
            f" p50_ms={percentile(latencies, 0.5) * 1000:.1f}"
            f" p99_ms={percentile(latencies, 0.99) * 1000:.1f}"
            f" max_ms={max(latencies) * 1000:.1f}"
            f" rss_first_mib={samples[0] / 1024:.1f}"
            f" rss_peak_mib={max(samples) / 1024:.1f}"
            f" rss_last_mib={samples[-1] / 1024:.1f}"
            f" stored={len(counts)}"
        )
        print("soak rss_mib over time: " + " ".join(f"{s / 1024:.0f}" for s in samples))

        assert len(ids) == EXCHANGES
        assert len(counts) == EXCHANGES, f"{EXCHANGES - len(counts)} never stored"
        assert set(counts.values()) == {1}
        assert max(samples) - samples[0] <= PEAK_GROWTH_KIB
        assert late_growth <= LATE_GROWTH_KIB
        assert "database write failed" in log
        assert "Traceback" not in log
