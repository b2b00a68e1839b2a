"""Shared fixtures: the scripted upstream and the running appliance."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.appliance import Appliance, missing_components
from tests.support.upstream import ScriptedUpstream

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_components() -> None:
    """Skip on a laptop without the appliance's components; fail under CI."""
    missing = missing_components()
    if not missing:
        return
    message = "missing: " + ", ".join(missing)
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def data_root() -> Iterator[Path]:
    # pytest's own temporary directories are private to root, but PostgreSQL
    # and the app processes run as their own users and must reach the data dir.
    root = Path(tempfile.mkdtemp(prefix="llmtap-test-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture(scope="session")
def appliance(upstream: ScriptedUpstream) -> Iterator[Appliance]:
    """The whole stack, booted from an empty data dir and migrated."""
    require_components()
    roots = data_root()
    # A short header timeout lets the silent-upstream test finish; the default
    # (600 s, for cold model loads) is checked by a settings test.
    settings = {"upstream_header_timeout_s": "10"}
    with Appliance(next(roots) / "data", upstream.url, **settings) as running:
        result = running.migrate()
        assert result.returncode == 0, result.stdout + result.stderr
        yield running
    roots.close()


@pytest.fixture
def fresh_appliance(upstream: ScriptedUpstream) -> Iterator[Appliance]:
    """A stack of its own, not migrated, for tests that change its state."""
    require_components()
    roots = data_root()
    with Appliance(next(roots) / "data", upstream.url) as running:
        yield running
    roots.close()
