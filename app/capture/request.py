"""Endpoint family of a request path and the request body fields the parser uses."""

from dataclasses import dataclass

from app.capture.assembly import content_text
from app.capture.sanitize import parse_json, snippet

# Path suffixes of the native Ollama API, matched after any base path prefix.
_OLLAMA_PATHS = {
    "/api/chat": "ollama.chat",
    "/api/generate": "ollama.generate",
    "/api/embed": "ollama.embed",
    "/api/embeddings": "ollama.embeddings",
    "/api/tags": "ollama.tags",
    "/api/show": "ollama.show",
    "/api/ps": "ollama.ps",
    "/api/version": "ollama.version",
    "/api/pull": "ollama.pull",
}

# Ollama native endpoints that stream unless the request sets "stream": false.
OLLAMA_STREAMING = frozenset({"ollama.chat", "ollama.generate", "ollama.pull"})


def classify_path(path: str, method: str = "POST") -> str:
    """Return the endpoint family of a request path, or "other"."""
    clean = path.split("?", 1)[0].rstrip("/").lower()

    for suffix, endpoint in _OLLAMA_PATHS.items():
        if clean.endswith(suffix):
            return endpoint

    # Suffix matching also covers Azure-style /openai/deployments/<name>/... paths.
    if clean.endswith("/chat/completions"):
        return "openai.chat"
    if clean.endswith("/completions"):
        return "openai.completions"
    if clean.endswith("/embeddings"):
        return "openai.embeddings"
    # Only GET lists or reads models. POST /v1beta/models/<m>:embedContent is Gemini.
    is_read = method.upper() in ("GET", "HEAD")
    if is_read and (clean.endswith("/models") or "/models/" in clean):
        return "openai.models"
    if clean.endswith("/responses") or "/responses/" in clean:
        return "openai.responses"
    return "other"


@dataclass(slots=True)
class RequestInfo:
    """Fields read from the request body, each None when absent or of another type."""

    body: dict | None
    model: str | None
    user: str | None
    stream: bool | None
    prompt_text: str | None
    input_count: int | None


def read_request(body: bytes, endpoint: str) -> RequestInfo:
    """Read model, user, stream flag and a prompt snippet from a request body."""
    value = None
    if body.strip():
        value, _, _ = parse_json(body.decode("utf-8", "replace"))
    if not isinstance(value, dict):
        return RequestInfo(None, None, None, None, None, None)

    stream = value.get("stream")
    return RequestInfo(
        body=value,
        model=_string(value.get("model")),
        user=_string(value.get("user")),
        stream=stream if isinstance(stream, bool) else None,
        prompt_text=snippet(_prompt_of(value, endpoint)),
        input_count=_input_count(value, endpoint),
    )


def _prompt_of(body: dict, endpoint: str) -> str | None:
    if isinstance(body.get("messages"), list):
        return _last_user_message(body["messages"])
    if endpoint == "openai.responses":
        return _responses_input(body.get("input"))

    for key in ("prompt", "input"):
        text = _last_text(body.get(key))
        if text is not None:
            return text
    return None


def _last_user_message(messages: list) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return None


def _responses_input(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _last_user_message(value)
    return None


def _last_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for item in reversed(value):
            if isinstance(item, str):
                return item
    return None


def _input_count(body: dict, endpoint: str) -> int | None:
    """Count the inputs of an embeddings request (a token array counts as one)."""
    if endpoint not in ("openai.embeddings", "ollama.embed", "ollama.embeddings"):
        return None

    value = body.get("input", body.get("prompt"))
    if isinstance(value, str):
        return 1
    if not isinstance(value, list):
        return None
    if value and all(isinstance(item, int) for item in value):
        return 1
    return len(value)


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None
