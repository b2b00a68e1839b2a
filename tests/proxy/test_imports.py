"""The proxy and its recorder load only the packages they use.

Each package costs resident memory in every process that imports it, and the
two processes share a memory budget.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def packages_loaded_by(module: str) -> set[str]:
    script = (
        f"import sys, {module}\n"
        "print('\\n'.join(sorted({name.split('.')[0] for name in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(result.stdout.split())


def test_recorder_loads_no_web_stack():
    loaded = packages_loaded_by("app.proxy.recorder")

    assert loaded & {"pydantic", "fastapi", "starlette", "httpcore", "uvicorn"} == set()


def test_proxy_loads_no_recording_packages():
    loaded = packages_loaded_by("app.proxy.main")

    assert loaded & {"psycopg", "jwt", "brotli"} == set()
