"""Assembly of Ollama native API responses (/api/chat, /api/generate, /api/pull, ...).

Each `apply_*` function takes one decoded JSON object (an NDJSON line or a
whole non-stream body), updates the Assembly, and returns the timeline kind.
Ollama reports durations in nanoseconds and omits metrics it does not know,
so every metric is optional.
"""

from app.capture.assembly import Assembly, Choice
from app.capture.openai import pick_kind, summarize_vectors

DURATION_KEYS = (
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)
_METRIC_KEYS = (*DURATION_KEYS, "prompt_eval_count", "eval_count")


def apply_generation(
    assembly: Assembly, obj: dict, event_name: str | None = None
) -> str:
    """Apply an /api/chat or /api/generate line, or their non-stream body."""
    kinds: set[str] = set()
    _note_model(assembly, obj)
    choice = assembly.choice(0)

    message = obj.get("message")
    if isinstance(message, dict):
        kinds |= _apply_output(choice, message)
        if not kinds and isinstance(message.get("role"), str):
            kinds.add("role")
    # /api/generate puts the output at the top level, under "response".
    kinds |= _apply_output(choice, obj, text_key="response")

    if _apply_metrics(assembly, obj):
        kinds.add("usage")
    if obj.get("done") is True:
        assembly.done = True
        done_reason = obj.get("done_reason")
        if isinstance(done_reason, str) and done_reason:
            choice.finish_reason = done_reason
        if not kinds & {"content", "reasoning", "tool_call"}:
            return "done"
    return pick_kind(kinds)


def _apply_output(choice: Choice, source: dict, text_key: str = "content") -> set[str]:
    kinds: set[str] = set()
    text = source.get(text_key)
    if isinstance(text, str) and text:
        choice.text.append(text)
        kinds.add("content")

    thinking = source.get("thinking")
    if isinstance(thinking, str) and thinking:
        choice.reasoning.append(thinking)
        kinds.add("reasoning")

    # Ollama sends each tool call whole, with arguments as an object.
    calls = source.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        choice.tool_calls.add_complete(
            _string(call.get("id")),
            _string(function.get("name")),
            function.get("arguments"),
        )
        kinds.add("tool_call")
    return kinds


def _apply_metrics(assembly: Assembly, obj: dict) -> bool:
    """Take token counts, durations and tokens per second from a final object."""
    present = {key: obj[key] for key in _METRIC_KEYS if _is_number(obj.get(key))}
    if not present:
        return False

    prompt = _count(present.get("prompt_eval_count"))
    completion = _count(present.get("eval_count"))
    if prompt is not None or completion is not None:
        total = (
            prompt + completion
            if prompt is not None and completion is not None
            else None
        )
        assembly.set_usage(
            {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": total,
                "cached_tokens": None,
                "reasoning_tokens": None,
            }
        )

    durations = {
        key: present[key] / 1e6 if key in present else None for key in DURATION_KEYS
    }
    if any(value is not None for value in durations.values()):
        assembly.durations = durations

    eval_duration = present.get("eval_duration")
    if completion is not None and eval_duration:
        assembly.tokens_per_s = completion / eval_duration * 1e9

    assembly.extra.setdefault("ollama", {}).update(present)
    return prompt is not None or completion is not None


def apply_embed(assembly: Assembly, obj: dict, event_name: str | None = None) -> str:
    """Apply an /api/embed or /api/embeddings body: usage and durations only."""
    _note_model(assembly, obj)
    if _apply_metrics(assembly, obj):
        return "usage"
    return "other"


def summarize_ollama_embeddings(body: dict) -> tuple[dict, dict]:
    """Return the body with its vectors replaced by a summary, and the summary.

    /api/embed returns "embeddings" (a list of vectors); the older
    /api/embeddings returns one vector under "embedding".
    """
    if "embeddings" in body:
        summary = summarize_vectors(body["embeddings"])
        return {**body, "embeddings": summary}, summary

    vector = body.get("embedding")
    summary = summarize_vectors([vector] if vector is not None else [])
    return {**body, "embedding": summary}, summary


def apply_pull(assembly: Assembly, obj: dict, event_name: str | None = None) -> str:
    """Apply an /api/pull progress line. {"status": "success"} ends the pull."""
    status = obj.get("status")
    if not isinstance(status, str):
        return "other"

    pull = assembly.extra.setdefault("pull", {"status": None, "layers": {}})
    pull["status"] = status
    digest = obj.get("digest")
    total = obj.get("total")
    if isinstance(digest, str) and _is_number(total):
        pull["layers"][digest] = total

    if status == "success":
        assembly.done = True
        return "done"
    return "other"


def apply_info(assembly: Assembly, obj: dict, event_name: str | None = None) -> str:
    """Apply /api/tags, /api/ps, /api/show or /api/version: count listed models."""
    models = obj.get("models")
    if isinstance(models, list):
        assembly.extra["model_count"] = len(models)
    return "other"


def _note_model(assembly: Assembly, obj: dict) -> None:
    model = obj.get("model")
    if assembly.response_model is None and isinstance(model, str) and model:
        assembly.response_model = model


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
