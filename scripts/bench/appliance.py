"""Run the whole llmtap appliance for a benchmark and look inside it.

`start_appliance` runs `python -m app.boot` (which becomes supervisord) with a
temporary data directory and free ports, then `python -m app.migrate`. The
returned `Appliance` reads the proxy's memory, stops and starts programs over
supervisord's XML-RPC socket and counts stored exchanges as the superuser.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.bench.servers import REPO_ROOT, free_port, wait_for_http

BOOT_TIMEOUT_S = 120.0
MIGRATE_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 60.0
HEALTH_PATH = "/_llmtap/health"
PROXY_PROGRAM = "proxy"
POSTGRES_PROGRAM = "postgres"
DATABASE = "llmtap"


@dataclass
class Appliance:
    """A running appliance: its supervisord process, environment and ports."""

    process: subprocess.Popen[bytes]
    environment: dict[str, str]
    data_dir: Path
    ports: dict[str, int]
    log_path: Path

    @property
    def proxy_port(self) -> int:
        return self.ports["LLMTAP_PROXY_PORT"]

    @property
    def entry_port(self) -> int:
        return self.ports["LLMTAP_ENTRY_PORT"]

    def supervisor(self) -> Any:
        """Return an XML-RPC proxy for supervisord's `supervisor.*` methods."""
        from supervisor.xmlrpc import SupervisorTransport

        socket_url = f"unix://{self.data_dir / 'run' / 'supervisor.sock'}"
        transport = SupervisorTransport(None, None, socket_url)
        # The URL is a placeholder: the transport talks to the Unix socket.
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def program_pid(self, name: str) -> int:
        info = self.supervisor().supervisor.getProcessInfo(name)
        if info["statename"] != "RUNNING":
            raise RuntimeError(f"program {name} is {info['statename']}, not RUNNING")
        return int(info["pid"])

    def proxy_rss_bytes(self, children: bool = False) -> int:
        """Return the resident memory of the proxy, with its children if asked."""
        pid = self.program_pid(PROXY_PROGRAM)
        return tree_rss_bytes(pid) if children else _rss_bytes(pid)

    def proxy_tree_pss_bytes(self) -> int:
        """Return the proportional set size of the proxy and its children.

        RSS counts a page shared by two processes, such as the interpreter's
        code, in both of them. PSS splits it between them.
        """
        pid = self.program_pid(PROXY_PROGRAM)
        return sum(_pss_bytes(each) for each in process_tree(pid))

    def stop_program(self, name: str) -> None:
        self.supervisor().supervisor.stopProcess(name, True)

    def start_program(self, name: str) -> None:
        self.supervisor().supervisor.startProcess(name, True)

    def count_exchanges(self) -> int:
        """Count the rows of llmtap.exchange, connecting as the superuser."""
        import psycopg

        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            row = conn.execute("select count(*) from llmtap.exchange").fetchone()
        assert row is not None
        return int(row[0])

    def superuser_conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        password = (self.data_dir / "secrets" / "postgres.secret").read_text().strip()
        return make_conninfo(
            host=str(self.data_dir / "run" / "postgres"),
            port=str(self.ports["LLMTAP_POSTGRES_PORT"]),
            dbname=DATABASE,
            user="postgres",
            password=password,
            connect_timeout="5",
        )

    def stop(self) -> None:
        """Stop supervisord by its pid (SIGTERM) and wait for it to exit."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def tree_rss_bytes(pid: int) -> int:
    """Sum VmRSS of `pid` and its descendants, read from /proc."""
    return sum(_rss_bytes(each) for each in process_tree(pid))


def process_tree(pid: int) -> list[int]:
    """Return `pid` and the pids of all its descendants."""
    found = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += children_of(current)
    return found


def _rss_bytes(pid: int) -> int:
    return _proc_kib_field(pid, "status", "VmRSS:") * 1024


def _pss_bytes(pid: int) -> int:
    return _proc_kib_field(pid, "smaps_rollup", "Pss:") * 1024


def _proc_kib_field(pid: int, name: str, field: str) -> int:
    """Return a kB field of /proc/PID/NAME, or 0 once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/{name}").read_text()
    except FileNotFoundError:
        return 0
    for line in text.splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def children_of(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return children


def appliance_missing() -> str | None:
    """Return why the appliance cannot run from this checkout, or None."""
    for module in ("app/boot.py", "app/migrate.py", "app/proxy/__main__.py"):
        if not (REPO_ROOT / module).exists():
            return f"{module} does not exist yet"
    if os.geteuid() != 0:
        return "the appliance must start as root, because supervisord switches users"
    return None


def start_appliance(workdir: Path, upstream_port: int) -> Appliance:
    """Boot the appliance on free ports in front of the upstream, then migrate."""
    data_dir = workdir / "llmtap-data"
    ports = {
        name: free_port()
        for name in (
            "LLMTAP_ENTRY_PORT",
            "LLMTAP_DASHBOARD_PORT",
            "LLMTAP_PROXY_PORT",
            "LLMTAP_WEB_PORT",
            "LLMTAP_POSTGREST_PORT",
            "LLMTAP_POSTGREST_ADMIN_PORT",
            "LLMTAP_POSTGRES_PORT",
        )
    }
    environment = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "LLMTAP_HOME": str(REPO_ROOT),
        "LLMTAP_DATA_DIR": str(data_dir),
        "LLMTAP_BIND_HOST": "127.0.0.1",
        "LLMTAP_UPSTREAM_URL": f"http://127.0.0.1:{upstream_port}",
        "LLMTAP_DASHBOARD_AUTH": "off",
        "PYTHONPATH": str(REPO_ROOT),
    }
    # The postgres and llmtap users must reach the data directory.
    os.chmod(workdir, 0o755)

    log_path = workdir / "appliance.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "app.boot"],
        cwd=REPO_ROOT,
        env=environment,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    appliance = Appliance(process, environment, data_dir, ports, log_path)
    try:
        _wait_until_ready(appliance)
    except BaseException:
        appliance.stop()
        raise
    return appliance


def _wait_until_ready(appliance: Appliance) -> None:
    proxy_health = f"http://127.0.0.1:{appliance.proxy_port}{HEALTH_PATH}"
    wait_for_http(proxy_health, BOOT_TIMEOUT_S, appliance.process)

    migrate = subprocess.run(
        [sys.executable, "-m", "app.migrate"],
        cwd=REPO_ROOT,
        env=appliance.environment,
        capture_output=True,
        timeout=MIGRATE_TIMEOUT_S,
    )
    if migrate.returncode != 0:
        output = (migrate.stdout + migrate.stderr).decode(errors="replace")
        raise RuntimeError(f"app.migrate failed ({migrate.returncode}):\n{output}")

    entry_health = f"http://127.0.0.1:{appliance.entry_port}{HEALTH_PATH}"
    wait_for_http(entry_health, BOOT_TIMEOUT_S, appliance.process)
    wait_for_rows(appliance, minimum=0, timeout_s=BOOT_TIMEOUT_S)


def wait_for_rows(appliance: Appliance, minimum: int, timeout_s: float) -> int:
    """Poll until llmtap.exchange has at least `minimum` rows; return the count."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            count = appliance.count_exchanges()
        except Exception as error:  # noqa: BLE001 - any driver error means retry
            last_error = error
        else:
            if count >= minimum:
                return count
        time.sleep(0.25)
    raise TimeoutError(
        f"llmtap.exchange did not reach {minimum} rows in {timeout_s:.0f} s "
        f"(last error: {last_error!r})"
    )


@dataclass
class RowSampler:
    """Sample the row count of llmtap.exchange in a thread, every `interval_s`."""

    appliance: Appliance
    interval_s: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RowSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        import psycopg

        conninfo = self.appliance.superuser_conninfo()
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    self._sample_until_stopped(conn)
            except psycopg.OperationalError:
                # The database is down on purpose during the outage phase.
                self._stop.wait(self.interval_s)

    def _sample_until_stopped(self, conn: Any) -> None:
        while not self._stop.is_set():
            row = conn.execute("select count(*) from llmtap.exchange").fetchone()
            self.samples.append((time.perf_counter(), int(row[0])))
            self._stop.wait(self.interval_s)

    def peak_rate(self, window_s: float = 1.0) -> float:
        """Return the highest rows-per-second over any window of `window_s`."""
        best = 0.0
        for index, (start, start_count) in enumerate(self.samples):
            for end, end_count in self.samples[index + 1 :]:
                if end - start >= window_s:
                    best = max(best, (end_count - start_count) / (end - start))
                    break
        return best
