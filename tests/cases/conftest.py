"""Fixtures of the failure-case tests, next to `appliance` and `upstream`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.upstream import ScriptedUpstream

from .helpers import Stage

# Long enough for the slowest scripted case (a cold load of a few seconds plus
# a stream), short enough that a stuck proxy fails the test instead of hanging.
CLIENT_TIMEOUT_S = 60


@pytest.fixture
def stage(upstream: ScriptedUpstream) -> Stage:
    return Stage(upstream)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        yield http
