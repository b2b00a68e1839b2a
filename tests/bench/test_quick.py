"""Regression check on the benchmark's ratios of llmtap to a direct connection.

Runs `python -m scripts.bench.run --quick` once for the module and checks the
ratios it measured in that run, so machine speed cancels out.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.bench import report, run
from scripts.bench.appliance import appliance_missing
from scripts.bench.servers import REPO_ROOT

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

IN_CI = os.environ.get("CI", "").lower() == "true"
RUN_TIMEOUT_S = 800


def missing_components() -> list[str]:
    missing = [
        program for program in ("nginx", "postgrest") if shutil.which(program) is None
    ]
    if not Path("/usr/lib/postgresql/15/bin/postgres").exists():
        missing.append("PostgreSQL 15")
    reason = appliance_missing()
    if reason is not None:
        missing.append(reason)
    return missing


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the quick benchmark; return its exit code, output and median results."""
    missing = missing_components()
    if missing:
        message = "cannot run the benchmark: " + "; ".join(missing)
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    results_path = tmp_path_factory.mktemp("bench") / "rounds.json"
    completed = subprocess.run(
        [sys.executable, "-m", "scripts.bench.run", "--quick", "--json", results_path],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    rounds = json.loads(results_path.read_text()) if results_path.exists() else []
    return {
        "returncode": completed.returncode,
        "output": completed.stdout + completed.stderr,
        "results": report.median_results(rounds),
    }


def test_quick_run_exits_zero(quick_run: dict) -> None:
    assert quick_run["returncode"] == 0, quick_run["output"]


def test_quick_latency_ratio(quick_run: dict) -> None:
    value = report.ratio(
        quick_run["results"], "json c1 p50 ms", report.PROXY, report.DIRECT
    )
    assert value <= run.QUICK_MAX_LATENCY_RATIO, quick_run["output"]


@pytest.mark.parametrize("metric", ["json c10 per s", "sse c10 per s"])
def test_quick_throughput_ratio(quick_run: dict, metric: str) -> None:
    value = report.ratio(quick_run["results"], metric, report.PROXY, report.DIRECT)
    assert value >= run.QUICK_MIN_THROUGHPUT_RATIO, quick_run["output"]


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_quick_stream_pacing_kept(quick_run: dict, framing: str) -> None:
    metric = f"slow {framing} gap p50 ms"
    value = report.ratio(quick_run["results"], metric, report.PROXY, report.DIRECT)
    low, high = run.QUICK_GAP_RATIO_RANGE
    assert low <= value <= high, quick_run["output"]


def test_quick_soak_persisted_everything(quick_run: dict) -> None:
    results = quick_run["results"]
    assert results["soak failed"][report.PROXY] == 0, quick_run["output"]
    assert results["soak persisted per s"][report.PROXY] > 0, quick_run["output"]
