"""State shared by the protocol handlers while they assemble one response."""

import json

MAX_TIMELINE = 2000

# Timeline kinds that count as generated output for time to first token.
OUTPUT_KINDS = frozenset({"content", "reasoning", "tool_call"})

USAGE_KEYS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
)


class ToolCalls:
    """Tool calls of one choice, assembled from deltas or added whole.

    Deltas are grouped by their `index`. A delta with a new `id` (or, without
    an id, a different function name) at an index already in use starts a new
    call, because Ollama's OpenAI endpoint puts index 0 on every call of a turn.
    """

    def __init__(self) -> None:
        self._calls: list[dict] = []
        self._position_by_index: dict[object, int] = {}

    def add_delta(self, delta: dict) -> None:
        """Merge one entry of an OpenAI `delta.tool_calls` list."""
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = _text_or_none(delta.get("id"))
        name = _text_or_none(function.get("name"))
        index = delta.get("index")
        if not isinstance(index, int | str):
            index = None

        # Without an index, a delta continues the latest call unless it starts one.
        if index is None:
            position = len(self._calls) - 1 if self._calls else None
        else:
            position = self._position_by_index.get(index)
        if position is None or self._starts_new_call(position, call_id, name):
            position = self._new_call(call_id, name)
            self._position_by_index[index] = position

        call = self._calls[position]
        if call_id and not call["id"]:
            call["id"] = call_id
        if name and not call["name"]:
            call["name"] = name
        call["arguments"].append(_arguments_text(function.get("arguments")))

    def add_complete(
        self, call_id: str | None, name: str | None, arguments: object
    ) -> None:
        """Add a call that arrived whole, as in Ollama's native API."""
        position = self._new_call(call_id, name)
        self._calls[position]["arguments"].append(_arguments_text(arguments))

    def add_fragment(self, key: object, call_id: str | None, name: str | None) -> None:
        """Start a call that later `append_arguments` calls extend, keyed by `key`."""
        self._position_by_index[key] = self._new_call(call_id, name)

    def append_arguments(self, key: object, text: object) -> None:
        """Append an arguments fragment to the call started under `key`."""
        position = self._position_by_index.get(key)
        if position is None:
            position = self._new_call(None, None)
            self._position_by_index[key] = position
        self._calls[position]["arguments"].append(_arguments_text(text))

    def result(self) -> list[dict] | None:
        """Return the calls as [{"id", "name", "arguments"}], or None when empty."""
        if not self._calls:
            return None

        return [
            {"id": c["id"], "name": c["name"], "arguments": "".join(c["arguments"])}
            for c in self._calls
        ]

    def _starts_new_call(
        self, position: int, call_id: str | None, name: str | None
    ) -> bool:
        current = self._calls[position]
        if call_id:
            return bool(current["id"]) and call_id != current["id"]

        return bool(name and current["name"] and name != current["name"])

    def _new_call(self, call_id: str | None, name: str | None) -> int:
        self._calls.append({"id": call_id, "name": name, "arguments": []})
        return len(self._calls) - 1


class Choice:
    """Text, reasoning, finish reason and tool calls of one choice index."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.finish_reason: str | None = None
        self.tool_calls = ToolCalls()

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "text": "".join(self.text) or None,
            "reasoning": "".join(self.reasoning) or None,
            "finish_reason": self.finish_reason,
            "tool_calls": self.tool_calls.result(),
        }


class Assembly:
    """Everything the handlers learn from the response body, in arrival order."""

    def __init__(self) -> None:
        self.choices: dict[int, Choice] = {}
        self.usage: dict | None = None
        self.stream_error: str | None = None
        self.done = False
        self.response_model: str | None = None
        self.durations: dict | None = None
        self.tokens_per_s: float | None = None
        self.extra: dict = {}
        self.notes: list[str] = []
        self.sanitized = False
        self.ttft_ms: float | None = None
        self.timeline: list[list] = []
        self.timeline_total = 0

    def choice(self, index: object) -> Choice:
        """Return the state of a choice index, creating it on first use."""
        key = index if isinstance(index, int) and not isinstance(index, bool) else 0
        if key not in self.choices:
            self.choices[key] = Choice(key)
        return self.choices[key]

    def set_usage(self, usage: dict | None) -> bool:
        """Keep a reported usage and return whether there was one to keep."""
        if usage is None:
            return False

        self.usage = usage
        return True

    def add_stream_error(self, message: str) -> None:
        """Record an error reported inside the body. The first one is kept."""
        if self.stream_error is None:
            self.stream_error = message
        elif message != self.stream_error:
            self.notes.append(f"further error in the stream: {message[:200]}")

    def record(self, ms: float, size: int, kind: str) -> None:
        """Add a timeline entry and note the time of the first output."""
        if kind in OUTPUT_KINDS and self.ttft_ms is None:
            self.ttft_ms = ms

        self.timeline_total += 1
        if len(self.timeline) < MAX_TIMELINE:
            self.timeline.append([ms, size, kind])


def normalize_usage(raw: object) -> dict | None:
    """Map an OpenAI-style usage object to the stored usage keys.

    Chat, completions and embeddings use prompt_tokens and completion_tokens,
    and the Responses API uses input_tokens and output_tokens. Returns None when
    the object has no token count at all.
    """
    if not isinstance(raw, dict):
        return None

    prompt_details = raw.get("prompt_tokens_details") or raw.get("input_tokens_details")
    completion_details = raw.get("completion_tokens_details") or raw.get(
        "output_tokens_details"
    )
    usage = {
        "prompt_tokens": _count(raw.get("prompt_tokens", raw.get("input_tokens"))),
        "completion_tokens": _count(
            raw.get("completion_tokens", raw.get("output_tokens"))
        ),
        "total_tokens": _count(raw.get("total_tokens")),
        "cached_tokens": _detail_count(prompt_details, "cached_tokens"),
        "reasoning_tokens": _detail_count(completion_details, "reasoning_tokens"),
    }
    if all(value is None for value in usage.values()):
        return None
    return usage


def content_text(value: object) -> str | None:
    """Return the text of a message content: a string or a list of text parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None

    texts = []
    for part in value:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "".join(texts) if texts else None


def error_text(value: object) -> str | None:
    """Return the message of an error value: a string or an object with "message"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        message = value.get("message")
        if isinstance(message, str):
            return message
        return json.dumps(value, ensure_ascii=False)[:500]
    if value is None:
        return None
    return str(value)[:500]


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # Some servers send counts as floats such as 12.0.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _detail_count(details: object, key: str) -> int | None:
    if not isinstance(details, dict):
        return None
    return _count(details.get(key))


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _arguments_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    # Ollama sends arguments as a JSON object rather than a string.
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)
