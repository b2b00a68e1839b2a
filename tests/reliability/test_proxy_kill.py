"""The proxy killed with SIGKILL: what was spooled arrives after the restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.cases.helpers import Stage, log_offset, log_since
from tests.support.appliance import Appliance
from tests.support.upstream import ScriptedUpstream

from .helpers import (
    Load,
    migrated_appliance,
    ok_ids,
    play_load_scripts,
    proxy_pid,
    supervise,
    wait_proxy,
    wait_stored,
)

SPOOLED_REQUESTS = 600
ARRIVAL_TIMEOUT_S = 60
# The spooler writes what finished every 50 ms; twice that, so every finished
# exchange is on disk before the kill.
SPOOL_WAIT_S = 0.1
# A response the client finished reading more than this long before the kill
# must have been spooled: the 50 ms flush interval plus slack for an event
# loop that runs late on a machine busy with the load itself.
LOSS_WINDOW_S = 0.5


def kill_proxy(appliance: Appliance) -> tuple[int, float]:
    """Send SIGKILL to the proxy and wait for supervisord's restart.

    Returns the old pid and the time.monotonic() of the kill.
    """
    pid = proxy_pid(appliance)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while proxy_pid_or_none(appliance) in (None, pid):
        assert time.monotonic() < deadline, "supervisord did not restart the proxy"
        time.sleep(0.1)
    wait_proxy(appliance)
    return pid, killed_at


def proxy_pid_or_none(appliance: Appliance) -> int | None:
    pid = appliance.supervisorctl("pid", "proxy").stdout.strip()
    return int(pid) if pid.isdigit() and pid != "0" else None


def test_spooled_exchanges_survive_sigkill(
    upstream: ScriptedUpstream, stage: Stage
) -> None:
    """Exchanges spooled while the database is down arrive after a SIGKILL."""
    with migrated_appliance(upstream.url) as appliance:
        plain, stream = play_load_scripts(stage)
        supervise(appliance, "stop", "postgres")
        outcomes = Load(appliance.proxy_url, plain, stream).run(SPOOLED_REQUESTS)
        time.sleep(SPOOL_WAIT_S)
        segments = list((appliance.data_dir / "spool").glob("*.ready"))
        offset = log_offset(appliance)

        old_pid, _ = kill_proxy(appliance)
        supervise(appliance, "start", "postgres")
        ids = ok_ids(outcomes)
        counts = wait_stored(appliance, ids, timeout_s=ARRIVAL_TIMEOUT_S)
        log = log_since(appliance, offset)

        assert segments, "nothing was spooled before the kill"
        assert len(ids) == SPOOLED_REQUESTS
        assert proxy_pid(appliance) != old_pid
        assert len(counts) == len(ids), f"{len(ids) - len(counts)} lost"
        assert set(counts.values()) == {1}
        assert "Traceback" not in log


def test_sigkill_under_load_loses_only_last_flush(
    upstream: ScriptedUpstream, stage: Stage
) -> None:
    """A SIGKILL under load loses at most the exchanges in flight or not yet spooled."""
    with migrated_appliance(upstream.url) as appliance:
        plain, stream = play_load_scripts(stage)
        load = Load(appliance.proxy_url, plain, stream)
        with load.background():
            time.sleep(3)
            _, killed_at = kill_proxy(appliance)
            time.sleep(2)
        outcomes = load.outcomes
        answered = [o for o in outcomes if o.status == 200]
        due = [o for o in answered if not killed_at - LOSS_WINDOW_S <= o.finished_at]
        wait_stored(appliance, ok_ids(due), timeout_s=ARRIVAL_TIMEOUT_S)
        time.sleep(2)
        counts = wait_stored(appliance, ok_ids(answered), timeout_s=1)

        lost = [o for o in answered if o.exchange_id not in counts]
        early = [o for o in lost if o.finished_at < killed_at - LOSS_WINDOW_S]
        failed = [o for o in outcomes if o.error is not None]
        print(
            f"sigkill under load: answered={len(answered)} failed={len(failed)}"
            f" lost={len(lost)}"
        )
        assert len(answered) > 100
        assert failed, "the kill cut no request, so the test proves nothing"
        oldest = max((killed_at - o.finished_at for o in early), default=0.0)
        assert not early, (
            f"{len(early)} exchanges lost that finished up to {oldest:.2f}s before"
            " the kill"
        )
        assert set(counts.values()) == {1}


def recorder_pid(appliance: Appliance) -> int:
    """Return the pid of the recorder, the proxy's child process."""
    proxy = proxy_pid(appliance)
    for task in Path(f"/proc/{proxy}/task").iterdir():
        for child in (task / "children").read_text().split():
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"app.proxy.recorder" in command:
                return int(child)
    raise AssertionError("the proxy runs no recorder")


def test_recorder_sigkill_loses_nothing(
    upstream: ScriptedUpstream, stage: Stage
) -> None:
    """A recorder killed mid-batch is restarted and writes every exchange once."""
    with migrated_appliance(upstream.url) as appliance:
        plain, stream = play_load_scripts(stage)
        load = Load(appliance.proxy_url, plain, stream)
        with load.background():
            time.sleep(2)
            for _ in range(3):
                os.kill(recorder_pid(appliance), signal.SIGKILL)
                time.sleep(1.5)
        outcomes = load.outcomes
        ids = ok_ids(outcomes)
        counts = wait_stored(appliance, ids, timeout_s=ARRIVAL_TIMEOUT_S)

        assert len(ids) == len(outcomes), "a recorder crash failed a request"
        assert len(counts) == len(ids), f"{len(ids) - len(counts)} never stored"
        assert set(counts.values()) == {1}
