"""Fixtures of the reliability tests, next to `appliance` and `upstream`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cases.helpers import Stage
from tests.support.upstream import ScriptedUpstream

from .helpers import CLIENT_TIMEOUT_S


@pytest.fixture
def stage(upstream: ScriptedUpstream) -> Stage:
    return Stage(upstream)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
        yield http
