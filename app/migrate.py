"""Database migrations: the supervisord jobs and the command that runs them.

`python -m app.migrate` (installed as `migrate` in the image and as
`scripts/migrate` on a host) tells the running supervisord to start each
migration job in order, waits for it to exit and reports its result. The jobs
themselves run as `python -m app.migrate job NAME`, started by supervisord.
"""

import argparse
import logging
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from app.logs import configure_logging
from app.settings import Settings, settings_or_exit

logger = logging.getLogger(__name__)

# supervisord program names, in the order they must run.
JOBS = ("migrate-roles", "migrate-schema")

JOB_TIMEOUT_S = 300.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="migrate", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    job = sub.add_parser("job", help="run one migration job (started by supervisord)")
    job.add_argument("name", choices=["roles", "schema"])
    arguments = parser.parse_args(argv)

    configure_logging()
    settings = settings_or_exit()
    if arguments.command == "job":
        return run_job(settings, arguments.name)
    return run_all(settings)


def run_all(settings: Settings) -> int:
    """Start each job through supervisord, in order; stop at the first failure."""
    supervisor = connect_supervisor(settings)
    for name in JOBS:
        ok, output = run_supervised(supervisor, settings, name)
        print(f"{name}: {'ok' if ok else 'FAILED'}")
        for line in output:
            print(f"  {line}")
        if not ok:
            print(
                f"migration stopped at {name}; fix the error above and run "
                "migrate again"
            )
            return 1
    print("all migrations applied; no restart is needed")
    return 0


def connect_supervisor(settings: Settings) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    socket = settings.run_dir / "supervisor.sock"
    if not socket.exists():
        sys.exit(
            f"supervisord is not running: its socket {socket} is missing. Start the "
            "appliance first (./scripts/run, or the container), with the same "
            "LLMTAP_DATA_DIR"
        )
    transport = SupervisorTransport(None, None, f"unix://{socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def run_supervised(
    supervisor: Any, settings: Settings, name: str
) -> tuple[bool, list[str]]:
    report = job_report_path(settings, name)
    report.unlink(missing_ok=True)
    try:
        supervisor.supervisor.startProcess(name, False)
    except xmlrpc.client.Fault as fault:
        # ALREADY_STARTED: another migrate is running this job; wait for it.
        if "ALREADY_STARTED" not in fault.faultString:
            return False, [f"supervisord could not start {name}: {fault.faultString}"]

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        info = supervisor.supervisor.getProcessInfo(name)
        if info["statename"] in ("EXITED", "FATAL", "STOPPED", "BACKOFF"):
            output = report.read_text().splitlines() if report.exists() else []
            return info["statename"] == "EXITED" and info["exitstatus"] == 0, output
        time.sleep(0.2)
    return False, [f"{name} did not finish within {JOB_TIMEOUT_S:.0f}s"]


def job_report_path(settings: Settings, name: str) -> Path:
    return settings.run_dir / f"{name}.log"


def run_job(settings: Settings, name: str) -> int:
    """Run one job; write its result lines to stdout and to its report file."""
    lines: list[str] = []
    try:
        lines = migrate_roles(settings) if name == "roles" else migrate_schema(settings)
        status = 0
    except Exception as error:  # noqa: BLE001 - the report must carry any failure
        logger.exception("migration job failed job=%s", name)
        lines.append(f"error: {error}")
        status = 1

    for line in lines:
        logger.info("migrate-%s %s", name, line)
    job_report_path(settings, f"migrate-{name}").write_text("\n".join(lines) + "\n")
    return status


def migrate_roles(settings: Settings) -> list[str]:
    from app.store import roles

    roles.wait_until_accepting(settings, timeout_s=60)
    return roles.apply(settings)


def migrate_schema(settings: Settings) -> list[str]:
    import psycopg
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.store.db import conninfo

    config = Config()
    config.set_main_option("script_location", str(settings.home / "migrations"))
    before = current_revision(settings)
    command.upgrade(config, "head")
    after = current_revision(settings)
    head = ScriptDirectory.from_config(config).get_current_head()

    # PostgREST listens on this channel and reloads its schema cache, so the new
    # views are served without a restart.
    with psycopg.connect(conninfo(settings, "owner"), autocommit=True) as conn:
        conn.execute("NOTIFY pgrst, 'reload schema'")

    if before == after:
        return [f"schema already at revision {after} (head {head})"]
    return [f"schema upgraded from {before or 'empty'} to {after}"]


def current_revision(settings: Settings) -> str | None:
    import psycopg

    from app.store.db import conninfo

    with psycopg.connect(conninfo(settings, "owner")) as conn:
        exists = conn.execute("SELECT to_regclass('llmtap.alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM llmtap.alembic_version").fetchone()
        return row[0] if row else None


if __name__ == "__main__":
    sys.exit(main())
