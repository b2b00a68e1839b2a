"""Build the container image with podman, run it and drive one exchange through it.

The container shares the host's network namespace (`--network host`) and every
LLMTAP_*_PORT is set to a free loopback port, so the scripted upstream, the
client and the appliance all talk over 127.0.0.1 and nothing else is reached.
PostgreSQL inside listens on a Unix socket only, so it cannot clash with a
server on the host.
"""

import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import formats
from tests.support.upstream import Script, ScriptedUpstream, send

from .conftest import REPO_DIR, require_tool

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

# A cold build bootstraps the base image and installs every package.
BUILD_TIMEOUT_S = 1500
# The first boot runs initdb before supervisord starts the programs.
START_TIMEOUT_S = 180
# The proxy ships exchanges from its spool to PostgreSQL in the background,
# once migrations have created the tables.
RECORD_TIMEOUT_S = 60
# supervisord allows the proxy 20 s and PostgreSQL 60 s to stop.
STOP_TIMEOUT_S = 90
PORT_SETTINGS = (
    "LLMTAP_ENTRY_PORT",
    "LLMTAP_DASHBOARD_PORT",
    "LLMTAP_PROXY_PORT",
    "LLMTAP_WEB_PORT",
    "LLMTAP_POSTGREST_PORT",
    "LLMTAP_POSTGREST_ADMIN_PORT",
)
ANSWER = "pong from the scripted upstream"
DEFAULT_HEALTH_URLS = [
    "http://127.0.0.1:8786/_llmtap/health",
    "http://127.0.0.1:3100/healthz",
]
# Program name, a fragment of its command line, and the user it must run as.
PROGRAM_USERS = [
    ("postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres"),
    ("postgrest", "/usr/local/bin/postgrest", "llmtap"),
    ("nginx", "nginx: master process", "llmtap"),
    ("proxy", "-m app.proxy", "llmtap"),
    ("web", "-m app.web", "llmtap"),
]


@dataclass
class Appliance:
    """A running container of the image and the servers it talks to."""

    name: str
    env: dict[str, str]
    ports: dict[str, int]
    upstream: ScriptedUpstream
    data_dir: Path

    @property
    def entry_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['LLMTAP_ENTRY_PORT']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['LLMTAP_DASHBOARD_PORT']}"

    def podman(
        self, *args: str, timeout_s: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run_podman(self.env, *args, timeout_s=timeout_s)

    def logs(self) -> str:
        result = self.podman("logs", self.name)
        return result.stdout + result.stderr


def run_podman(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def client() -> httpx.Client:
    # trust_env=False keeps proxy variables of the machine away from 127.0.0.1.
    return httpx.Client(trust_env=False, timeout=10)


def wait_for_health(appliance: Appliance, timeout_s: float) -> None:
    """Wait until both health URLs return 200, or fail with the container log."""
    urls = [
        f"{appliance.entry_url}/_llmtap/health",
        f"{appliance.dashboard_url}/healthz",
    ]
    deadline = time.monotonic() + timeout_s
    with client() as http:
        while urls and time.monotonic() < deadline:
            try:
                if http.get(urls[0]).status_code == 200:
                    urls.pop(0)
                    continue
            except httpx.TransportError:
                pass
            time.sleep(0.5)

    if urls:
        pytest.fail(
            f"{urls[0]} did not return 200 within {timeout_s} s:\n{appliance.logs()}"
        )


def fetch_exchange(appliance: Appliance, exchange_id: str, timeout_s: float) -> dict:
    """Poll the dashboard API until it returns the exchange."""
    url = f"{appliance.dashboard_url}/api/exchanges/{exchange_id}"
    deadline = time.monotonic() + timeout_s
    with client() as http:
        while True:
            response = http.get(url)
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)

    message = f"GET {url} returned {response.status_code}: {response.text}"
    assert response.status_code == 200, f"{message}\n{appliance.logs()}"
    return response.json()


def send_chat(appliance: Appliance) -> httpx.Response:
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "ping"}]}
    with client() as http:
        return http.post(f"{appliance.entry_url}/v1/chat/completions", json=body)


def migrate(appliance: Appliance) -> subprocess.CompletedProcess[str]:
    return appliance.podman("exec", appliance.name, "migrate", timeout_s=300)


@pytest.fixture(scope="module")
def podman_env() -> dict[str, str]:
    require_tool(
        "podman", "install it with apt-get install podman buildah runc debootstrap"
    )
    result = subprocess.run(
        [str(REPO_DIR / "scripts" / "build-image"), "--print-env"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    settings = dict(line.split("=", 1) for line in result.stdout.splitlines())
    return {**os.environ, **settings}


@pytest.fixture(scope="module")
def image(podman_env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(REPO_DIR / "scripts" / "build-image")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )

    assert result.returncode == 0, (
        f"scripts/build-image failed:\n{result.stderr[-8000:]}"
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def model_server() -> Iterator[ScriptedUpstream]:
    server = ScriptedUpstream().start()
    server.route(
        "POST",
        "/v1/chat/completions",
        Script(
            headers=[("Content-Type", "application/json")],
            steps=[send(formats.chat_completion(ANSWER))],
            chunked=False,
        ),
    )
    yield server
    server.stop()


PASSWORD_LINE = re.compile(r"llmtap dashboard password \(shown once\): (\S+)")
# Fetch a URL from inside the container and print the status, so that a
# container without a network reaches its own loopback only.
FETCH_SCRIPT = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
)


def fetch_inside(appliance: Appliance, url: str) -> int | None:
    """Return the status of GET `url` made inside the container, None on error."""
    result = appliance.podman(
        "exec", appliance.name, "python3", "-c", FETCH_SCRIPT, url
    )
    if result.returncode != 0:
        return None
    return int(result.stdout.strip())


def wait_inside(appliance: Appliance, urls: list[str], timeout_s: float) -> None:
    """Wait until every URL returns 200 inside the container."""
    deadline = time.monotonic() + timeout_s
    pending = list(urls)
    while pending and time.monotonic() < deadline:
        if fetch_inside(appliance, pending[0]) == 200:
            pending.pop(0)
        else:
            time.sleep(1)

    if pending:
        pytest.fail(
            f"{pending[0]} did not return 200 within {timeout_s} s:\n{appliance.logs()}"
        )


@pytest.fixture(scope="module")
def appliance(
    podman_env: dict[str, str],
    image: str,
    model_server: ScriptedUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Appliance]:
    data_dir = tmp_path_factory.mktemp("data")
    ports = dict(zip(PORT_SETTINGS, free_ports(len(PORT_SETTINGS)), strict=True))
    settings = {
        **{name: str(port) for name, port in ports.items()},
        "LLMTAP_BIND_HOST": "127.0.0.1",
        "LLMTAP_UPSTREAM_URL": model_server.url,
        "LLMTAP_DASHBOARD_AUTH": "off",
    }
    name = f"llmtap-test-{uuid.uuid4().hex[:12]}"
    env_args = [
        arg for key, value in settings.items() for arg in ("--env", f"{key}={value}")
    ]

    started = run_podman(
        podman_env,
        "run", "--detach", "--name", name, "--network", "host",
        # podman runs HEALTHCHECK through systemd timers, which fail on hosts
        # without systemd, so a test below runs the same command by hand.
        "--no-healthcheck",
        "--volume", f"{data_dir}:/data",
        *env_args,
        image,
    )  # fmt: skip
    assert started.returncode == 0, f"podman run failed:\n{started.stderr}"

    appliance = Appliance(name, podman_env, ports, model_server, data_dir)
    try:
        wait_for_health(appliance, START_TIMEOUT_S)
        yield appliance
    finally:
        appliance.podman("rm", "--force", "--time", "30", name)


def test_health_endpoints_return_ok(appliance: Appliance) -> None:
    with client() as http:
        entry = http.get(f"{appliance.entry_url}/_llmtap/health")
        dashboard = http.get(f"{appliance.dashboard_url}/healthz")

    assert entry.status_code == 200
    assert entry.headers["content-type"].startswith("application/json")
    assert dashboard.status_code == 200


def test_chat_exchange_reaches_dashboard(appliance: Appliance) -> None:
    response = send_chat(appliance)

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == ANSWER
    exchange_id = response.headers.get("helicone-id")
    assert exchange_id, f"no helicone-id header in {dict(response.headers)}"

    migrated = migrate(appliance)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr

    exchange = fetch_exchange(appliance, exchange_id, RECORD_TIMEOUT_S)
    assert exchange["id"] == exchange_id
    assert exchange["model"] == "mock-1"
    assert exchange["http_status"] == 200
    assert ANSWER in (exchange["response_text"] or "")


def test_migrate_is_repeatable(appliance: Appliance) -> None:
    first = migrate(appliance)
    second = migrate(appliance)

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr


@pytest.mark.parametrize(
    ("program", "command", "user"), PROGRAM_USERS, ids=[p[0] for p in PROGRAM_USERS]
)
def test_program_runs_as_its_user(
    appliance: Appliance, program: str, command: str, user: str
) -> None:
    # The image has no ps, so the container's own Python reads /proc.
    script = (
        "import json, os, pwd\n"
        "out = []\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
        "        uid = os.stat(f'/proc/{pid}').st_uid\n"
        "    except OSError:\n"
        "        continue\n"
        "    name = pwd.getpwuid(uid).pw_name\n"
        "    out.append([cmd.replace(b'\\0', b' ').decode(), name])\n"
        "print(json.dumps(out))\n"
    )
    result = appliance.podman("exec", appliance.name, "python3", "-c", script)
    assert result.returncode == 0, result.stderr

    processes = json.loads(result.stdout)
    users = {owner for cmdline, owner in processes if command in cmdline}
    assert users == {user}, f"{program} ({command}) runs as {users}: {processes}"


def test_image_healthcheck_passes(appliance: Appliance, image: str) -> None:
    inspected = appliance.podman("image", "inspect", image)
    assert inspected.returncode == 0, inspected.stderr
    healthcheck = json.loads(inspected.stdout)[0]["Healthcheck"]
    assert healthcheck["Test"][0] == "CMD"

    # The command reads the port from the container's LLMTAP_DASHBOARD_PORT.
    result = appliance.podman("exec", appliance.name, *healthcheck["Test"][1:])

    assert result.returncode == 0, result.stdout + result.stderr


def test_restart_keeps_exchanges(appliance: Appliance) -> None:
    response = send_chat(appliance)
    assert response.status_code == 200, response.text
    exchange_id = response.headers["helicone-id"]
    assert migrate(appliance).returncode == 0
    fetch_exchange(appliance, exchange_id, RECORD_TIMEOUT_S)

    restarted = appliance.podman(
        "restart",
        "--time",
        str(STOP_TIMEOUT_S),
        appliance.name,
        timeout_s=STOP_TIMEOUT_S + 60,
    )
    assert restarted.returncode == 0, restarted.stderr
    wait_for_health(appliance, START_TIMEOUT_S)

    exchange = fetch_exchange(appliance, exchange_id, RECORD_TIMEOUT_S)
    assert exchange["id"] == exchange_id


def test_stop_shuts_postgres_down_cleanly(appliance: Appliance) -> None:
    stopped = appliance.podman(
        "stop",
        "--time",
        str(STOP_TIMEOUT_S),
        appliance.name,
        timeout_s=STOP_TIMEOUT_S + 60,
    )
    assert stopped.returncode == 0, stopped.stderr

    exit_code = appliance.podman(
        "inspect", "--format", "{{.State.ExitCode}}", appliance.name
    ).stdout.strip()
    log = appliance.logs()
    assert exit_code == "0", log[-4000:]
    assert re.search(r"database system is shut down", log), log[-4000:]


@pytest.fixture(scope="module")
def isolated_appliance(
    podman_env: dict[str, str],
    image: str,
    model_server: ScriptedUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Appliance]:
    """Run the image as `docker run` would, with default ports and sign-in on.

    `--network none` leaves the container only its own loopback, so the
    default ports cannot clash with the host and every request stays inside.
    """
    data_dir = tmp_path_factory.mktemp("isolated-data")
    name = f"llmtap-test-{uuid.uuid4().hex[:12]}"

    started = run_podman(
        podman_env,
        "run", "--detach", "--name", name, "--network", "none",
        "--no-healthcheck", "--volume", f"{data_dir}:/data",
        image,
    )  # fmt: skip
    assert started.returncode == 0, f"podman run failed:\n{started.stderr}"

    appliance = Appliance(name, podman_env, {}, model_server, data_dir)
    try:
        wait_inside(appliance, DEFAULT_HEALTH_URLS, START_TIMEOUT_S)
        yield appliance
    finally:
        appliance.podman("rm", "--force", "--time", "30", name)


def test_default_ports_answer(isolated_appliance: Appliance) -> None:
    for url in DEFAULT_HEALTH_URLS:
        assert fetch_inside(isolated_appliance, url) == 200, url


def test_first_boot_prints_password_once(isolated_appliance: Appliance) -> None:
    first_log = isolated_appliance.logs()
    assert len(PASSWORD_LINE.findall(first_log)) == 1, first_log[-4000:]
    secret = isolated_appliance.data_dir / "secrets" / "dashboard.secret"
    assert secret.stat().st_mode & 0o777 == 0o600

    restarted = isolated_appliance.podman(
        "restart",
        "--time",
        str(STOP_TIMEOUT_S),
        isolated_appliance.name,
        timeout_s=STOP_TIMEOUT_S + 60,
    )
    assert restarted.returncode == 0, restarted.stderr
    wait_inside(isolated_appliance, DEFAULT_HEALTH_URLS, START_TIMEOUT_S)

    log = isolated_appliance.logs()
    assert len(PASSWORD_LINE.findall(log)) == 1, log[-4000:]
