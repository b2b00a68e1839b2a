"""An appliance with stored exchanges upgrades to the summary tables intact.

The data directory starts at the schema before the summary tables and gets
2 000 exchanges. Then the documented `migrate` command runs. The back-filled
summaries must match the exchanges, and a downgrade followed by an upgrade
must leave them matching again.
"""

import subprocess
import sys

from tests.support.appliance import ROOT, Appliance
from tests.support.summaries import GENERATED_EXCHANGES, PAIRS, summary_mismatches

BEFORE_SUMMARIES = "0003"
ROWS = 2000
NO_MISMATCHES = {table: 0 for table in PAIRS}


def alembic(appliance: Appliance, action: str, revision: str) -> None:
    """Move the schema to `revision` with alembic, as the migration job does."""
    script = (
        "from alembic import command\n"
        "from alembic.config import Config\n"
        "config = Config()\n"
        "config.set_main_option('script_location', 'migrations')\n"
        f"command.{action}(config, {revision!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=appliance.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def run_roles_job(appliance: Appliance) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.migrate", "job", "roles"],
        cwd=ROOT,
        env=appliance.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_upgrade_back_fills_summaries(fresh_appliance: Appliance):
    run_roles_job(fresh_appliance)
    alembic(fresh_appliance, "upgrade", BEFORE_SUMMARIES)
    fresh_appliance.query(GENERATED_EXCHANGES, ROWS)

    result = fresh_appliance.migrate()

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"schema upgraded from {BEFORE_SUMMARIES}" in result.stdout
    assert summary_mismatches(fresh_appliance) == NO_MISMATCHES
    [hours] = fresh_appliance.query(
        "SELECT sum(exchanges)::int AS n FROM llmtap.summary_hour"
    )
    assert hours["n"] == ROWS

    alembic(fresh_appliance, "downgrade", BEFORE_SUMMARIES)
    alembic(fresh_appliance, "upgrade", "head")

    assert summary_mismatches(fresh_appliance) == NO_MISMATCHES
