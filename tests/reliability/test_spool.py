"""The spool itself: what it keeps on disk, and a spool that cannot be written."""

from __future__ import annotations

import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cases.helpers import Stage, log_offset, log_since
from tests.support import formats
from tests.support.appliance import Appliance
from tests.support.upstream import Script, ScriptedUpstream, send

from .helpers import (
    CHAT,
    Load,
    MemorySampler,
    health,
    migrated_appliance,
    ok_ids,
    stored_counts,
    supervise,
    wait_stored,
)

API_KEY = "sk-reliability-SPOOLED-0123456789abcdef"
# Large responses make a per-exchange cost visible in the proxy's memory.
BIG_BODY_BYTES = 1024 * 1024
BIG_REQUESTS = 400
# Memory the proxy may add while the spool cannot be written. Holding every
# waiting exchange whole would need about BIG_REQUESTS MiB.
UNWRITABLE_GROWTH_KIB = 256 * 1024
ARRIVAL_TIMEOUT_S = 90


def json_script(body: bytes) -> Script:
    return Script(headers=[("Content-Type", "application/json")], steps=[send(body)])


@dataclass
class SpoolContents:
    mode: int
    segments: list[Path]
    holding_key: list[str]


@pytest.fixture(scope="module")
def spooled(upstream: ScriptedUpstream) -> Iterator[SpoolContents]:
    """Exchanges that carried an API key, kept in the spool by a database outage."""
    with migrated_appliance(upstream.url) as appliance:
        headers = Stage(upstream).play(
            "POST", CHAT, json_script(formats.chat_completion("ok"))
        )
        headers["Authorization"] = f"Bearer {API_KEY}"
        supervise(appliance, "stop", "postgres")
        Load(appliance.proxy_url, headers, headers, concurrency=1).run(5)
        time.sleep(0.5)
        spool = appliance.data_dir / "spool"
        segments = sorted(spool.glob("*.ready"))
        holding = [p.name for p in segments if API_KEY.encode() in p.read_bytes()]
        mode = stat.S_IMODE(spool.stat().st_mode)
        supervise(appliance, "start", "postgres")
        yield SpoolContents(mode, segments, holding)


def test_spool_directory_private(spooled: SpoolContents) -> None:
    assert spooled.segments, "nothing was spooled while the database was down"
    assert spooled.mode & 0o077 == 0, f"spool directory mode is {spooled.mode:o}"


def test_spool_holds_no_plain_credentials(spooled: SpoolContents) -> None:
    assert spooled.segments, "nothing was spooled while the database was down"
    assert not spooled.holding_key, (
        f"{len(spooled.holding_key)} segments hold the API key in plain text"
    )


def wait_accounted(appliance: Appliance, ids: list[str]) -> tuple[dict[str, int], int]:
    """Wait until every exchange is stored or counted as dropped; return both."""
    deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
    while True:
        counts = stored_counts(appliance, ids)
        dropped = int(str(health(appliance)["dropped"]))
        if len(counts) + dropped >= len(ids) or time.monotonic() > deadline:
            return counts, dropped
        time.sleep(0.5)


@dataclass
class UnwritableRun:
    """What a burst of large exchanges left while the spool could not be written."""

    sent: int
    stored: int
    dropped: int
    growth_kib: int
    log: str


@pytest.fixture(scope="module")
def unwritable(upstream: ScriptedUpstream) -> Iterator[UnwritableRun]:
    """Large exchanges sent while root makes the spool read-only for the proxy.

    A full or read-only volume fails the spool's writes the same way. The
    database stays up the whole time.
    """
    with migrated_appliance(upstream.url) as appliance:
        body = formats.chat_completion("x" * BIG_BODY_BYTES)
        headers = Stage(upstream).play("POST", CHAT, json_script(body))
        Load(appliance.proxy_url, headers, headers).run(20)
        time.sleep(1)
        spool = appliance.data_dir / "spool"
        mode = stat.S_IMODE(spool.stat().st_mode)
        offset = log_offset(appliance)

        spool.chmod(0o500)
        try:
            with MemorySampler(appliance) as memory:
                load = Load(appliance.proxy_url, headers, headers, concurrency=4)
                outcomes = load.run(BIG_REQUESTS)
                time.sleep(1)
        finally:
            spool.chmod(mode)
        ids = ok_ids(outcomes)
        counts, dropped = wait_accounted(appliance, ids)
        growth = memory.peak_kib - memory.samples[0][1]
        yield UnwritableRun(
            len(ids), len(counts), dropped, growth, log_since(appliance, offset)
        )


def test_unwritable_spool_counts_losses(unwritable: UnwritableRun) -> None:
    """Every exchange is stored or counted as dropped, and the failure is logged."""
    assert unwritable.sent == BIG_REQUESTS
    assert unwritable.stored + unwritable.dropped >= unwritable.sent
    assert "spool write failed" in unwritable.log


def test_unwritable_spool_memory_bounded(unwritable: UnwritableRun) -> None:
    growth = unwritable.growth_kib

    assert growth <= UNWRITABLE_GROWTH_KIB, f"RSS grew by {growth // 1024} MiB"


def test_recovered_spool_keeps_newest(unwritable: UnwritableRun) -> None:
    """The memory bound drops the oldest; what it kept arrives, each counted once."""
    assert unwritable.stored > 0, f"{unwritable.dropped} dropped, none stored"
    assert unwritable.stored + unwritable.dropped == unwritable.sent


def test_corrupt_segment_does_not_block_others(
    upstream: ScriptedUpstream, stage: Stage
) -> None:
    """A segment that cannot be decoded stays behind; later exchanges still arrive.

    Renaming makes a torn segment impossible, but a disk fault or a segment
    written by another version can still leave bytes the recorder cannot read.
    """
    with migrated_appliance(upstream.url) as appliance:
        spool = appliance.data_dir / "spool"
        poison = spool / "00000000000000000001-1-000001-3.ready"
        poison.write_bytes(b"\x00not a marshal payload\xff")
        shutil.chown(poison, "llmtap", "llmtap")
        offset = log_offset(appliance)
        headers = stage.play("POST", CHAT, json_script(formats.chat_completion("ok")))
        outcomes = Load(appliance.proxy_url, headers, headers).run(50)
        ids = ok_ids(outcomes)
        counts = wait_stored(appliance, ids, timeout_s=30)
        time.sleep(2)
        log = log_since(appliance, offset)

        assert len(counts) == len(ids)
        assert log.count("Traceback") <= 1, "the corrupt segment is retried forever"
