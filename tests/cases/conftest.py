"""Fixtures of the failure-case tests, next to `appliance` and `upstream`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import data_root, require_components
from tests.support.appliance import Appliance
from tests.support.upstream import ScriptedUpstream

from .helpers import Stage

# Long enough for the slowest scripted case (a cold load of a few seconds plus
# a stream), short enough that a stuck proxy fails the test instead of hanging.
CLIENT_TIMEOUT_S = 60
# The strict stack's limits: small enough to reach quickly in a test, and the
# idle timeout below the header timeout to show that the two are separate.
STRICT_HEADER_TIMEOUT_S = 5
STRICT_IDLE_TIMEOUT_S = 2
STRICT_MAX_REQUEST_BYTES = 2 * 1024 * 1024


@pytest.fixture
def stage(upstream: ScriptedUpstream) -> Stage:
    return Stage(upstream)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        yield http


@pytest.fixture(scope="session")
def strict_appliance(upstream: ScriptedUpstream) -> Iterator[Appliance]:
    """A second stack with short upstream timeouts and a small body limit."""
    require_components()
    roots = data_root()
    settings = {
        "upstream_header_timeout_s": str(STRICT_HEADER_TIMEOUT_S),
        "upstream_idle_timeout_s": str(STRICT_IDLE_TIMEOUT_S),
        "max_request_bytes": str(STRICT_MAX_REQUEST_BYTES),
    }
    with Appliance(next(roots) / "data", upstream.url, **settings) as running:
        result = running.migrate()
        assert result.returncode == 0, result.stdout + result.stderr
        yield running
    roots.close()
