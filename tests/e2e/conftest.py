"""Fixtures of the end-to-end tests: a real Open WebUI chatting through the appliance.

Each `conversation` runs once per connection kind. Open WebUI starts with its
OpenAI (or Ollama) connection pointed at the appliance's entry port, and the
admin user takes a non-ASCII name. One chat of two messages then goes through
the UI's own API, the scripted upstream replies in Ollama's formats, and the
tests read what the appliance stored.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.support.appliance import Appliance
from tests.support.formats import (
    chat_completion,
    chat_stream,
    model_list,
    ollama_chat_done,
    ollama_chat_line,
    ollama_tags,
    ollama_version,
    to_json,
    usage_block,
)
from tests.support.upstream import (
    RouteScript,
    Script,
    ScriptedUpstream,
    SeenRequest,
    end,
    send,
)

from .openwebui import (
    VERSION,
    Connections,
    OpenWebUI,
    Turn,
    UIClient,
    install_dir,
    installed_version,
)

USER_NAME = "Zoë Example"
STREAM_PIECES = ["Hel", "lo", ", Zo", "ë", "!"]
TITLE = "Greeting for Zoë"
TAGS = ["Greetings", "Testing"]
FOLLOW_UPS = ["How are you?", "What can you do?"]
OPENAI_MODEL = "mock-1"
OLLAMA_MODEL = "llama3.2:latest"
# Token counts the scripted upstream reports: (prompt, completion).
CHAT_USAGE = (26, 5)
TASK_USAGE = (310, 12)
# One new chat makes four model requests (title, chat, follow-ups, tags); the
# second message makes two more (chat, follow-ups).
FIRST_TURN_REQUESTS = 4
TOTAL_REQUESTS = 6
ROWS_TIMEOUT_S = 90.0
TASK_RESULTS_TIMEOUT_S = 30.0

JSON = [("Content-Type", "application/json")]
SSE = [("Content-Type", "text/event-stream")]
NDJSON = [("Content-Type", "application/x-ndjson")]


def task_kind(body: dict[str, Any] | None) -> str:
    """Name the Open WebUI request a chat body is: chat, title, tags or follow_ups.

    Background tasks send one user message that starts with "### Task:" and
    names the JSON key it expects back.
    """
    messages = (body or {}).get("messages") or []
    text = messages[-1].get("content") if messages else None
    if not isinstance(text, str) or "### Task:" not in text:
        return "chat"
    for kind in ("follow_ups", "tags", "title"):
        if f'"{kind}"' in text:
            return kind
    return "other_task"


def task_answer(kind: str) -> str:
    answers = {
        "title": {"title": TITLE},
        "tags": {"tags": TAGS},
        "follow_ups": {"follow_ups": FOLLOW_UPS},
    }
    return to_json(answers.get(kind, {})).decode()


def openai_chat(request: SeenRequest) -> Script:
    """Build Ollama's response to /v1/chat/completions, streamed or not."""
    body = json.loads(request.body)
    model = body.get("model", OPENAI_MODEL)
    kind = task_kind(body)
    if kind == "chat" and body.get("stream"):
        # Ollama sends the usage chunk only when the client asks for it.
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        events = chat_stream(
            STREAM_PIECES, model=model, usage=CHAT_USAGE if wants_usage else None
        )
        return Script(headers=SSE, steps=[*(send(event) for event in events), end()])

    text = "".join(STREAM_PIECES) if kind == "chat" else task_answer(kind)
    usage = CHAT_USAGE if kind == "chat" else TASK_USAGE
    completion = chat_completion(text, model=model, usage=usage_block(*usage))
    return Script(headers=JSON, steps=[send(completion), end()])


def ollama_chat(request: SeenRequest) -> Script:
    """Build Ollama's response to /api/chat. A missing stream flag means streamed."""
    body = json.loads(request.body)
    model = body.get("model", OLLAMA_MODEL)
    kind = task_kind(body)
    if kind == "chat" and body.get("stream", True):
        lines = [ollama_chat_line(piece, model=model) for piece in STREAM_PIECES]
        lines.append(ollama_chat_done(*CHAT_USAGE, model=model))
        return Script(headers=NDJSON, steps=[*(send(line) for line in lines), end()])

    text = "".join(STREAM_PIECES) if kind == "chat" else task_answer(kind)
    usage = CHAT_USAGE if kind == "chat" else TASK_USAGE
    done = ollama_chat_done(*usage, model=model, content=text)
    return Script(headers=JSON, steps=[send(done), end()])


def json_script(body: bytes) -> Script:
    return Script(headers=JSON, steps=[send(body), end()])


@dataclass(frozen=True)
class Kind:
    """One way of connecting Open WebUI to the appliance."""

    name: str
    model: str
    chat_path: str
    list_paths: tuple[str, ...]
    routes: Callable[[str], dict[tuple[str, str], RouteScript]]
    connections: Callable[[str], Connections]


def openai_routes(prefix: str) -> dict[tuple[str, str], RouteScript]:
    return {
        ("GET", f"{prefix}/v1/models"): json_script(model_list([OPENAI_MODEL])),
        ("POST", f"{prefix}/v1/chat/completions"): openai_chat,
    }


def ollama_routes(prefix: str) -> dict[tuple[str, str], RouteScript]:
    return {
        ("GET", f"{prefix}/api/tags"): json_script(ollama_tags([OLLAMA_MODEL])),
        ("GET", f"{prefix}/api/ps"): json_script(to_json({"models": []})),
        ("GET", f"{prefix}/api/version"): json_script(ollama_version()),
        ("POST", f"{prefix}/api/chat"): ollama_chat,
    }


KINDS = {
    "openai": Kind(
        name="openai",
        model=OPENAI_MODEL,
        chat_path="/v1/chat/completions",
        list_paths=("/v1/models",),
        routes=openai_routes,
        connections=lambda base: Connections(openai_base_url=f"{base}/v1"),
    ),
    "ollama": Kind(
        name="ollama",
        model=OLLAMA_MODEL,
        chat_path="/api/chat",
        list_paths=("/api/tags", "/api/ps"),
        routes=ollama_routes,
        connections=lambda base: Connections(ollama_base_url=base),
    ),
}


@dataclass
class Conversation:
    """What one chat through Open WebUI left behind, for the tests to check."""

    kind: Kind
    prefix: str
    user: dict[str, Any]
    turns: list[Turn]
    chat: dict[str, Any]
    rows: list[dict[str, Any]]
    list_rows: list[dict[str, Any]]
    seen: list[SeenRequest]
    by_kind: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in self.rows:
            self.by_kind.setdefault(task_kind(row["request_body"]), []).append(row)


def require_openwebui() -> Path:
    """Return the Open WebUI virtualenv, or skip without it (fail under CI=true)."""
    venv = install_dir()
    version = installed_version(venv)
    if version == VERSION:
        return venv
    found = f"version {version}" if version else "nothing"
    message = (
        f"Open WebUI {VERSION} is not installed in {venv} (found {found})."
        f" Run scripts/install-openwebui {venv}"
    )
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def openwebui_venv() -> Path:
    return require_openwebui()


@pytest.fixture(scope="module", params=sorted(KINDS))
def conversation(
    request: pytest.FixtureRequest,
    openwebui_venv: Path,
    appliance: Appliance,
    upstream: ScriptedUpstream,
) -> Iterator[Conversation]:
    """Run one two-message chat through Open WebUI and collect what was stored."""
    kind = KINDS[request.param]
    prefix = f"/owui-{kind.name}-{uuid.uuid4().hex[:8]}"
    for (method, path), script in kind.routes(prefix).items():
        upstream.route(method, path, script)

    base_url = f"{appliance.entry_url}{prefix}"
    root = Path(tempfile.mkdtemp(prefix="llmtap-openwebui-"))
    server = OpenWebUI(openwebui_venv, root / "data", kind.connections(base_url))
    try:
        server.start(base_url)
        yield run_conversation(kind, prefix, server, appliance, upstream)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def run_conversation(
    kind: Kind,
    prefix: str,
    server: OpenWebUI,
    appliance: Appliance,
    upstream: ScriptedUpstream,
) -> Conversation:
    client = UIClient(server)
    try:
        client.sign_in()
        user = client.rename(USER_NAME)
        model = find_model(client, kind.model, server)

        first = client.send(model, "Hello there", after=None)
        chat_path = f"{prefix}{kind.chat_path}"
        wait_for_rows(appliance, server, chat_path, FIRST_TURN_REQUESTS)
        second = client.send(model, "And again", after=first)
        rows = wait_for_rows(appliance, server, chat_path, TOTAL_REQUESTS)
        chat = wait_for_task_results(client, first.chat_id)
    finally:
        client.close()

    list_rows = appliance.query(
        "SELECT * FROM llmtap.exchange WHERE path = ANY(%s) ORDER BY started_at",
        [f"{prefix}{path}" for path in kind.list_paths],
    )
    seen = [request for request in upstream.requests if request.path.startswith(prefix)]
    return Conversation(
        kind, prefix, user, [first, second], chat, rows, list_rows, seen
    )


def find_model(client: UIClient, model_id: str, server: OpenWebUI) -> dict[str, Any]:
    models = client.models()
    for model in models:
        if model["id"] == model_id:
            return model
    ids = [model["id"] for model in models]
    raise AssertionError(
        f"Open WebUI lists no model {model_id!r} (it lists {ids}). Log:\n{server.log()}"
    )


def wait_for_rows(
    appliance: Appliance, server: OpenWebUI, chat_path: str, count: int
) -> list[dict[str, Any]]:
    """Wait for `count` exchanges on `chat_path` and return them, oldest first.

    Rows are selected by path, not by session, so that an exchange stored
    without the chat id still fails the session checks instead of going missing.
    """
    rows = appliance.wait_rows(
        "path = %s", chat_path, count=count, timeout_s=ROWS_TIMEOUT_S
    )
    if len(rows) < count:
        kinds = [task_kind(row["request_body"]) for row in rows]
        raise AssertionError(
            f"expected {count} exchanges on {chat_path} within {ROWS_TIMEOUT_S} s,"
            f" found {len(rows)} ({kinds}). Open WebUI log:\n{server.log()}"
        )
    return rows


def wait_for_task_results(client: UIClient, chat_id: str) -> dict[str, Any]:
    """Wait until Open WebUI has stored the generated title and tags; return the chat.

    Open WebUI saves them after the model's response arrives, so a stored
    exchange can come a moment before the chat shows its result.
    """
    deadline = time.monotonic() + TASK_RESULTS_TIMEOUT_S
    while True:
        chat = client.chat(chat_id)
        done = chat.get("title") == TITLE and chat.get("meta", {}).get("tags")
        if done or time.monotonic() > deadline:
            return chat
        time.sleep(0.2)
