"""A real Open WebUI server for end-to-end tests, and a client that chats like its UI.

Open WebUI lives in a virtualenv of its own (scripts/install-openwebui). The
server runs on a free loopback port with a temporary DATA_DIR, offline, and with
only the connections a test names, so every request it makes goes to 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.appliance import free_port

DEFAULT_DIR = Path("/opt/llmtap-test/open-webui")
VERSION = "0.12.4"
# A start from an empty DATA_DIR runs Open WebUI's migrations first. It took
# 29 to 42 s on a busy 2-core machine, so 180 s is a margin, not a measurement.
HEALTH_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 20_000


def install_dir() -> Path:
    """Return the Open WebUI virtualenv, from LLMTAP_OPENWEBUI_DIR or the default."""
    return Path(os.environ.get("LLMTAP_OPENWEBUI_DIR", str(DEFAULT_DIR)))


def installed_version(venv: Path) -> str | None:
    """Return the open-webui version installed in `venv`, or None when missing."""
    if not (venv / "bin" / "open-webui").exists():
        return None
    result = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('open-webui'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


@dataclass(frozen=True)
class Connections:
    """The model connections an Open WebUI server is configured with."""

    openai_base_url: str | None = None
    ollama_base_url: str | None = None

    def environment(self, unused_base_url: str) -> dict[str, str]:
        """Build the connection settings. A disabled one points at `unused_base_url`.

        Both base URLs are always set, so no default (api.openai.com or
        localhost:11434) remains for a feature that reads them unasked.
        """
        openai_url = self.openai_base_url or f"{unused_base_url}/v1"
        return {
            "ENABLE_OPENAI_API": str(self.openai_base_url is not None),
            "OPENAI_API_BASE_URL": openai_url,
            "OPENAI_API_KEY": "sk-test-PLACEHOLDER",
            "RAG_OPENAI_API_BASE_URL": openai_url,
            "RAG_OPENAI_API_KEY": "sk-test-PLACEHOLDER",
            "ENABLE_OLLAMA_API": str(self.ollama_base_url is not None),
            "OLLAMA_BASE_URL": self.ollama_base_url or unused_base_url,
        }


class OpenWebUI:
    """One `open-webui serve` process in its own process group."""

    def __init__(self, venv: Path, data_dir: Path, connections: Connections) -> None:
        self.venv = venv
        self.data_dir = data_dir
        self.connections = connections
        self.port = free_port()
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, base_url: str) -> dict[str, str]:
        """Build the server's whole environment. Only PATH is inherited."""
        home = self.data_dir / "home"
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "DATA_DIR": str(self.data_dir),
            "WEBUI_SECRET_KEY": secrets.token_hex(32),
            "WEBUI_AUTH": "False",
            "OFFLINE_MODE": "true",
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(home / "huggingface"),
            "RAG_EMBEDDING_ENGINE": "openai",
            "ANONYMIZED_TELEMETRY": "False",
            "DO_NOT_TRACK": "true",
            "SCARF_NO_ANALYTICS": "true",
            "ENABLE_VERSION_UPDATE_CHECK": "false",
            "ENABLE_FORWARD_USER_INFO_HEADERS": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            **self.connections.environment(base_url),
        }

    def start(self, base_url: str) -> OpenWebUI:
        """Start the server and return once /health returns 200.

        `base_url` is where a disabled connection points, so that it stays local.
        """
        (self.data_dir / "home").mkdir(parents=True, exist_ok=True)
        command = [
            str(self.venv / "bin" / "open-webui"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                env=self.environment(base_url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"Open WebUI exited during start. Log:\n{self.log()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Open WebUI /health timed out after {HEALTH_TIMEOUT_S} s."
                    f" Log:\n{self.log()}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after a grace period."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except FileNotFoundError:
            return ""


@dataclass
class Turn:
    """The ids of one message sent in a chat."""

    user_message_id: str
    assistant_message_id: str
    chat_id: str


class UIClient:
    """Calls Open WebUI's HTTP API with the payloads its web UI sends."""

    def __init__(self, server: OpenWebUI) -> None:
        self.http = httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
        self.user: dict[str, Any] = {}
        # The UI sends its Socket.IO id so that replies arrive as events. The
        # server only emits to that room and never checks it, so any id does.
        self.socket_id = uuid.uuid4().hex[:20]

    def close(self) -> None:
        self.http.close()

    def sign_in(self) -> dict[str, Any]:
        """Sign in as the built-in admin (WEBUI_AUTH=False) and keep its token."""
        response = self.http.post(
            "/api/v1/auths/signin", json={"email": "", "password": ""}
        )
        response.raise_for_status()
        self.user = response.json()
        self.http.headers["Authorization"] = f"Bearer {self.user['token']}"
        return self.user

    def rename(self, name: str) -> dict[str, Any]:
        """Set the signed-in user's display name, as the account settings page does."""
        response = self.http.post(
            "/api/v1/auths/update/profile",
            json={"name": name, "profile_image_url": ""},
        )
        response.raise_for_status()
        self.user = {**self.user, **response.json()}
        return response.json()

    def models(self) -> list[dict[str, Any]]:
        """List the models as the UI does on load, which makes Open WebUI fetch them."""
        response = self.http.get("/api/models", params={"refresh": "true"})
        response.raise_for_status()
        return response.json()["data"]

    def send(self, model: dict[str, Any], content: str, after: Turn | None) -> Turn:
        """Send one user message: a new chat's first, or the next one after `after`.

        The first message of a new chat goes without a chat id and with
        parent_id null, and Open WebUI creates the chat and returns its id.
        """
        user_message_id = str(uuid.uuid4())
        assistant_message_id = str(uuid.uuid4())
        parent_id = after.assistant_message_id if after else None
        payload = self._payload(model, content, parent_id, user_message_id)
        payload["id"] = assistant_message_id
        if after is not None:
            payload["chat_id"] = after.chat_id

        response = self.http.post("/api/chat/completions", json=payload)
        response.raise_for_status()
        body = response.json()
        return Turn(user_message_id, assistant_message_id, body["chat_id"])

    def _payload(
        self,
        model: dict[str, Any],
        content: str,
        parent_id: str | None,
        user_message_id: str,
    ) -> dict[str, Any]:
        user_message = {
            "id": user_message_id,
            "parentId": parent_id,
            "childrenIds": [],
            "role": "user",
            "user_id": self.user["id"],
            "user": {"id": self.user["id"], "name": self.user["name"]},
            "content": content,
            "timestamp": int(time.time()),
            "models": [model["id"]],
        }
        # Title and tags are asked for only on a chat's first message.
        tasks: dict[str, bool] = {"follow_up_generation": True}
        if parent_id is None:
            tasks |= {"title_generation": True, "tags_generation": True}
        return {
            "stream": True,
            "model": model["id"],
            "params": {},
            "features": {},
            "variables": {},
            "model_item": model,
            "session_id": self.socket_id,
            "parent_id": parent_id,
            "user_message": user_message,
            "background_tasks": tasks,
        }

    def chat(self, chat_id: str) -> dict[str, Any]:
        """Return the stored chat, with its title, tags and message history."""
        response = self.http.get(f"/api/v1/chats/{chat_id}")
        response.raise_for_status()
        return response.json()
