"""Start and stop the servers a benchmark run compares: the upstream, a bare
nginx reverse proxy and LiteLLM's proxy. Each listens on 127.0.0.1 only, on a
free port, and writes its files under a temporary directory of the run."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 15.0
REPO_ROOT = Path(__file__).resolve().parents[2]

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""

LITELLM_CONFIG = """\
model_list:
{models}
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
litellm_settings:
  telemetry: false
"""

LITELLM_MODEL = """\
  - model_name: {name}
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:{port}{prefix}/v1
      api_key: unused
"""


@dataclass
class Server:
    """A child process serving on `port`, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def stop(self) -> None:
        """Send SIGTERM and wait; SIGKILL the process if it does not exit."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout_s: float, process: subprocess.Popen) -> None:
    """Poll `url` until it responds with any HTTP status; raise TimeoutError if not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not respond within {timeout_s:.0f} s")


def start_upstream(workdir: Path) -> Server:
    """Start scripts/bench/upstream.py and read the port it bound."""
    log_path = workdir / "upstream.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.bench.upstream", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=log_path.open("wb"),
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"upstream failed to start; see {log_path}")
    port = int(line.split()[-1])
    return Server("upstream", process, port, log_path)


def start_nginx(workdir: Path, upstream_port: int) -> Server:
    """Render a minimal reverse-proxy nginx.conf and run nginx in the foreground."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    run = workdir / "nginx"
    run.mkdir(exist_ok=True)
    port = free_port()
    conf = run / "nginx.conf"
    conf.write_text(NGINX_CONF.format(run=run, port=port, upstream_port=upstream_port))

    log_path = run / "nginx.out"
    process = subprocess.Popen(
        [nginx, "-c", str(conf), "-p", str(run)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_http(f"http://127.0.0.1:{port}/", 10, process)
    return Server("nginx", process, port, log_path)


def start_litellm(workdir: Path, venv: Path, upstream_port: int) -> tuple[Server, str]:
    """Start LiteLLM's proxy from `venv` with one model per upstream route.

    Returns the server and its master key, which clients send as a bearer token.
    """
    models = "".join(
        LITELLM_MODEL.format(name=name, port=upstream_port, prefix=prefix)
        for name, prefix in (
            ("bench", ""),
            ("bench-slow", "/slow"),
            ("bench-echo", "/echo"),
        )
    )
    config = workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(models=models))

    port = free_port()
    master_key = "sk-" + secrets.token_hex(16)
    environment = {
        **os.environ,
        "LITELLM_MASTER_KEY": master_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log_path = workdir / "litellm.log"
    command = [
        str(venv / "bin" / "litellm"),
        "--config", str(config),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--num_workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_http(f"http://127.0.0.1:{port}/health/liveliness", 180, process)
    return Server("litellm", process, port, log_path), master_key
