"""A bounded on-disk spool of captured exchanges waiting for the database.

Each batch of exchanges becomes one segment file, written under a temporary
name and renamed into place, so a segment is either whole or absent. An
exchange counts as accepted once its segment is renamed: from then on it
survives a SIGKILL of the proxy and is written to PostgreSQL exactly once (rows
are keyed by exchange id). Segment names start with a nanosecond timestamp, so
sorting them gives the order in which exchanges were accepted, and end with the
number of exchanges they hold. Several processes share one spool: a process
claims a segment by renaming it, which only one rename can win.
"""

import fcntl
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

READY = ".ready"
CLAIMED = ".claimed"
DROPPED_FILE = "dropped.json"
# The recorder's status, which the proxy's health endpoint reads.
STATUS_FILE = "recorder.json"


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.pid = os.getpid()
        self.sequence = 0
        self.directory.mkdir(parents=True, exist_ok=True)

    def append(self, payload: bytes, count: int) -> Path:
        """Write one segment of `count` exchanges; return its path once accepted."""
        self.sequence += 1
        name = f"{time.time_ns():020d}-{self.pid}-{self.sequence:06d}-{count}"
        temporary = self.directory / f"{name}.tmp"
        temporary.write_bytes(payload)
        final = self.directory / f"{name}{READY}"
        temporary.rename(final)
        return final

    def ready(self) -> list[Path]:
        """Return the segments waiting for the database, oldest first."""
        return sorted(self.directory.glob(f"*{READY}"))

    def claim(self, segment: Path) -> Path | None:
        """Take a segment for shipping; None when another worker took it first."""
        claimed = segment.with_name(f"{segment.stem}{CLAIMED}-{self.pid}")
        try:
            segment.rename(claimed)
        except FileNotFoundError:
            return None
        return claimed

    def release(self, claimed: Path) -> None:
        """Give a claimed segment back, for a later try."""
        original = claimed.name.split(CLAIMED)[0]
        claimed.rename(claimed.with_name(f"{original}{READY}"))

    def recover(self) -> int:
        """Return segments claimed by processes that no longer run; count them.

        Also removes temporary files of dead processes: their rows were never
        accepted.
        """
        recovered = 0
        for path in self.directory.iterdir():
            pid = _owner_pid(path)
            if pid is None or pid == self.pid or _alive(pid):
                continue
            if CLAIMED in path.name:
                self.release(path)
                recovered += 1
            elif path.suffix == ".tmp":
                path.unlink(missing_ok=True)
        return recovered

    def enforce_limit(self) -> int:
        """Drop the oldest ready segments while the spool is over its limit.

        Returns the number of exchanges dropped; the running total is kept in
        dropped.json for the dashboard.
        """
        segments = self.ready()
        sizes = [_size(path) for path in segments]
        total = sum(sizes)
        dropped_rows = 0
        for path, size in zip(segments, sizes, strict=True):
            if total <= self.max_bytes:
                break
            claimed = self.claim(path)
            if claimed is None:
                continue
            dropped_rows += segment_count(claimed)
            claimed.unlink(missing_ok=True)
            total -= size
        if dropped_rows:
            self.add_dropped(dropped_rows)
        return dropped_rows

    def add_dropped(self, count: int) -> int:
        """Add to the persistent count of dropped rows; return the new total."""
        path = self.directory / DROPPED_FILE
        with (self.directory / ".dropped.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = read_dropped(self.directory) or {
                "dropped": 0,
                "since": datetime.now(UTC).isoformat(),
            }
            state["dropped"] = int(state["dropped"]) + count
            temporary = path.with_suffix(".tmp-dropped")
            temporary.write_text(json.dumps(state))
            temporary.rename(path)
        return int(state["dropped"])


def read_dropped(directory: Path) -> dict[str, Any] | None:
    """Return {"dropped": N, "since": iso8601} or None when nothing was dropped."""
    try:
        state = json.loads((directory / DROPPED_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_status(directory: Path, status: dict[str, Any]) -> None:
    path = directory / STATUS_FILE
    temporary = path.with_suffix(".tmp-status")
    temporary.write_text(json.dumps(status))
    temporary.rename(path)


def read_status(directory: Path) -> dict[str, Any]:
    """Return the recorder's last status, or {} before its first one."""
    try:
        status = json.loads((directory / STATUS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def segment_count(segment: Path) -> int:
    """Return the number of exchanges a segment holds, from its name."""
    stem = segment.name.split(".")[0]
    count = stem.rsplit("-", 1)[-1]
    return int(count) if count.isdigit() else 0


def _owner_pid(path: Path) -> int | None:
    """Return the claiming pid of a claimed segment, or the writing pid of a .tmp."""
    if CLAIMED in path.name:
        pid = path.name.rsplit("-", 1)[-1]
    elif path.suffix == ".tmp":
        pid = path.name.split("-")[1]
    else:
        return None
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
