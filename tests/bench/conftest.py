"""Registers the `bench` marker, so `pytest -m "not bench"` deselects these tests."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "bench: runs the benchmark suite's quick mode (about a minute)"
    )
