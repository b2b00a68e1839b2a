"""Shared helpers of the ops tests: tool lookup and the `image` marker."""

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]
# Tools installed from requirements-dev.lock sit next to the interpreter.
VENV_BIN = Path(sys.executable).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "image: builds and runs the container image with podman (slow)"
    )


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_tool(name: str, hint: str) -> str:
    """Return the path of tool `name`, skipping without it but failing under CI=true."""
    found = shutil.which(
        name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found:
        return found
    message = f"{name} is not installed. To run this test, {hint}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
