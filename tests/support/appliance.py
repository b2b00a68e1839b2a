"""The whole appliance under supervisord, for tests: free ports, a temporary data dir.

It starts exactly what production starts (`python -m app.boot`, the same
supervisord.conf), so the tests exercise the real PostgreSQL, PostgREST, nginx,
proxy and dashboard processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[2]
PORT_SETTINGS = (
    "ENTRY_PORT",
    "DASHBOARD_PORT",
    "PROXY_PORT",
    "WEB_PORT",
    "POSTGREST_PORT",
    "POSTGREST_ADMIN_PORT",
    "POSTGRES_PORT",
)
BOOT_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def missing_components() -> list[str]:
    """Return the system components the appliance needs that are not installed."""
    missing = []
    if not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        missing.append("PostgreSQL 15 (apt-get install postgresql-15)")
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        missing.append("nginx (apt-get install nginx)")
    if shutil.which("postgrest") is None:
        missing.append("PostgREST (scripts/install-postgrest)")
    if os.geteuid() != 0:
        missing.append("root (supervisord switches each program to its user)")
    return missing


class Appliance:
    def __init__(
        self,
        data_dir: Path,
        upstream_url: str,
        launcher: tuple[str, ...] = (),
        **settings: str,
    ) -> None:
        """`launcher` is a command prefix, such as one that enters a namespace."""
        self.data_dir = data_dir
        self.launcher = launcher
        self.ports = {name: free_port() for name in PORT_SETTINGS}
        self.env = {
            **os.environ,
            "LLMTAP_DATA_DIR": str(data_dir),
            "LLMTAP_HOME": str(ROOT),
            "LLMTAP_BIND_HOST": "127.0.0.1",
            "LLMTAP_UPSTREAM_URL": upstream_url,
            "LLMTAP_DASHBOARD_AUTH": "off",
            **{f"LLMTAP_{name}": str(port) for name, port in self.ports.items()},
            **{f"LLMTAP_{key.upper()}": value for key, value in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"

    @property
    def entry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ENTRY_PORT']}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['PROXY_PORT']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['DASHBOARD_PORT']}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['WEB_PORT']}"

    def start(self) -> Appliance:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.launcher, sys.executable, "-m", "app.boot"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        checks = [
            f"{self.proxy_url}/_llmtap/health",
            f"{self.entry_url}/_llmtap/health",
        ]
        checks.append(f"{self.dashboard_url}/healthz")
        for url in checks:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"appliance exited during boot; log:\n{self.log()}"
                    )
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer; log:\n{self.log()}")
                time.sleep(0.1)
        self.wait_database()

    def wait_database(self) -> None:
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while True:
            try:
                self.query("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def migrate(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / "scripts" / "migrate")],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def supervisorctl(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "supervisor.supervisorctl",
                "-c",
                str(ROOT / "supervisord.conf"),
                *arguments,
            ],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def conninfo(self, user: str = "postgres", dbname: str = "llmtap") -> str:
        password = (self.data_dir / "secrets" / f"{user}.secret").read_text().strip()
        return psycopg.conninfo.make_conninfo(
            host=str(self.data_dir / "run" / "postgres"),
            port=str(self.ports["POSTGRES_PORT"]),
            dbname=dbname,
            user=user,
            password=password,
        )

    def query(
        self, sql: str, *params: Any, user: str = "postgres"
    ) -> list[dict[str, Any]]:
        with psycopg.connect(
            self.conninfo(user), autocommit=True, row_factory=dict_row
        ) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def exchange(
        self, exchange_id: str, timeout_s: float = 10
    ) -> dict[str, Any] | None:
        """Wait until the exchange is stored; return its row, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                rows = self.query(
                    "SELECT * FROM llmtap.exchange WHERE id = %s", exchange_id
                )
            except psycopg.errors.UndefinedTable:
                rows = []
            if rows:
                return rows[0]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def wait_rows(
        self, where: str, *params: Any, count: int = 1, timeout_s: float = 10
    ) -> list[dict[str, Any]]:
        """Wait for `count` exchanges matching `where`; return them, oldest first."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.query(
                f"SELECT * FROM llmtap.exchange WHERE {where} ORDER BY started_at",
                *params,
            )
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Appliance:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
