"""A target whose name does not resolve, without a lookup leaving the machine.

The appliance runs in a mount namespace of its own where /etc/resolv.conf names
127.0.0.1 as the only nameserver, and nothing listens on port 53 there. The
lookup then fails at once on loopback, as it would when the host's resolver is
down or the name does not exist.
"""

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, data_root, require_components
from tests.support.appliance import Appliance
from tests.support.upstream import ScriptedUpstream

TARGET = "http://llmtap-test.invalid"


def namespaces_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def isolated_resolver(upstream: ScriptedUpstream) -> Iterator[Appliance]:
    require_components()
    if not namespaces_available():
        message = "unshare --mount is not permitted here"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    roots = data_root()
    root = next(roots)
    resolv = root / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    resolv.chmod(0o644)
    launcher = (
        "unshare",
        "--mount",
        "sh",
        "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(resolv),
    )
    data_dir: Path = root / "data"
    with Appliance(data_dir, upstream.url, launcher, allowed_targets=TARGET) as running:
        assert running.migrate().returncode == 0
        yield running
    roots.close()


def test_unresolvable_name_gets_502(isolated_resolver: Appliance):
    headers = {"Helicone-Target-URL": TARGET, "Helicone-User-Id": uuid.uuid4().hex}
    request = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}

    reply = httpx.post(
        isolated_resolver.proxy_url + "/v1/chat/completions",
        json=request,
        headers=headers,
        timeout=30,
    )
    error = json.loads(reply.content)["error"]
    row = isolated_resolver.exchange(reply.headers["helicone-id"])

    assert reply.status_code == 502, error
    assert error["type"] == "upstream_unreachable"
    assert TARGET in error["message"]
    assert row is not None
    assert row["outcome"] == "proxy_error"
    assert row["error_kind"] == "upstream_unreachable"
