"""Fill the Parsed from a finished ExchangeParser: outputs, body, errors, timing."""

from typing import TYPE_CHECKING

from app.capture.assembly import MAX_TIMELINE
from app.capture.body import JSON, NDJSON, SSE
from app.capture.model import Parsed
from app.capture.ollama import summarize_ollama_embeddings
from app.capture.openai import summarize_openai_embeddings
from app.capture.sanitize import cap_text

if TYPE_CHECKING:
    from app.capture.exchange import ExchangeParser

# Endpoints whose successful responses should report token counts.
_USAGE_ENDPOINTS = frozenset(
    {
        "openai.chat",
        "openai.completions",
        "openai.responses",
        "openai.embeddings",
        "ollama.chat",
        "ollama.generate",
        "ollama.embed",
        "ollama.embeddings",
    }
)


def store_result(parser: "ExchangeParser") -> Parsed:
    """Return the parser's Parsed with every derived field set."""
    parsed = parser.parsed
    _set_request_fields(parsed, parser)
    _set_outputs(parsed, parser)
    _set_body(parsed, parser)
    _set_errors(parsed, parser)
    _set_timing(parsed, parser)
    _set_extra(parsed, parser)
    _add_notes(parsed, parser)
    return parsed


def _set_request_fields(parsed: Parsed, parser: "ExchangeParser") -> None:
    request = parser.request
    parsed.model = request.model or parser.assembly.response_model
    parsed.request_user = request.user
    parsed.prompt_text = request.prompt_text
    parsed.is_stream = parser.is_stream


def _set_outputs(parsed: Parsed, parser: "ExchangeParser") -> None:
    assembly = parser.assembly
    status = parser.captured.status
    # Usage is only taken from successful responses, because error bodies carry none.
    if status is not None and status < 400:
        parsed.usage = assembly.usage

    choices = [assembly.choices[index].as_dict() for index in sorted(assembly.choices)]
    choices = [choice for choice in choices if _has_values(choice)]
    if not choices:
        return

    # "Choice 0" is index 0, or the lowest index when a server numbers from 1.
    first = choices[0]
    parsed.choices = choices
    parsed.response_text = first["text"]
    parsed.reasoning_text = first["reasoning"]
    parsed.tool_calls = first["tool_calls"]
    parsed.finish_reason = first["finish_reason"]


def _has_values(choice: dict) -> bool:
    return any(
        choice[key] for key in ("text", "reasoning", "finish_reason", "tool_calls")
    )


def _set_body(parsed: Parsed, parser: "ExchangeParser") -> None:
    body = parser.body
    parsed.sanitized = parser.assembly.sanitized or body.replaced
    parsed.response_truncated = parser.captured.truncated or body.cut
    if not body.text:
        return

    if parser.json_valid:
        value, summarized = _summarize_vectors(parsed, parser.json_value)
        _, too_large = cap_text(body.text, parser.max_body_bytes)
        if summarized or not too_large:
            parsed.response_body = value
            return

    text, cut, sanitized = parser.stored_text()
    parsed.response_body = text
    parsed.sanitized |= sanitized
    if cut:
        parsed.response_truncated = True
        parsed.notes.append(f"response body truncated at {parser.max_body_bytes} bytes")


def _summarize_vectors(parsed: Parsed, value: object) -> tuple[object, bool]:
    if not isinstance(value, dict):
        return value, False

    if parsed.endpoint == "openai.embeddings" and "data" in value:
        value, summary = summarize_openai_embeddings(value)
    elif parsed.endpoint in ("ollama.embed", "ollama.embeddings") and (
        "embeddings" in value or "embedding" in value
    ):
        value, summary = summarize_ollama_embeddings(value)
    else:
        return value, False

    parsed.extra["embeddings"] = summary
    return value, True


def _set_errors(parsed: Parsed, parser: "ExchangeParser") -> None:
    status = parser.captured.status
    kinds = parser.error_kinds()
    parsed.error_kind = ",".join(kinds) if kinds else None
    parsed.error_message = parser.error_message()
    if status is not None and status < 400:
        parsed.stream_error = parser.assembly.stream_error


def _set_timing(parsed: Parsed, parser: "ExchangeParser") -> None:
    body = parser.body
    assembly = parser.assembly
    status = parser.captured.status
    parsed.first_byte_ms = body.first_byte_ms
    parsed.done = _is_done(parser)
    parsed.durations = assembly.durations

    parsed.ttft_ms = assembly.ttft_ms
    is_success = status is not None and 200 <= status < 300
    if parsed.ttft_ms is None and is_success and parser.format not in (SSE, NDJSON):
        if parsed.response_text or parsed.reasoning_text or parsed.tool_calls:
            parsed.ttft_ms = body.last_byte_ms

    parsed.tokens_per_s = assembly.tokens_per_s
    if parsed.tokens_per_s is None and parser.format == SSE:
        parsed.tokens_per_s = _stream_rate(parsed, body.last_byte_ms)

    parsed.timeline = assembly.timeline


def _is_done(parser: "ExchangeParser") -> bool:
    if parser.captured.status is None:
        return False
    if parser.format in (SSE, NDJSON):
        return parser.assembly.done
    if parser.format == JSON and parser.body.text.strip():
        return parser.json_valid
    return not parser.captured.truncated and parser.body.error is None


def _stream_rate(parsed: Parsed, last_ms: float | None) -> float | None:
    """Return completion tokens per second from the first output to the last chunk."""
    completion = (parsed.usage or {}).get("completion_tokens")
    if completion is None or parsed.ttft_ms is None or last_ms is None:
        return None

    seconds = (last_ms - parsed.ttft_ms) / 1000
    if seconds <= 0:
        return None
    return completion / seconds


def _set_extra(parsed: Parsed, parser: "ExchangeParser") -> None:
    extra = parsed.extra
    extra.update(parser.assembly.extra)
    if parser.request.input_count is not None:
        extra["input_count"] = parser.request.input_count

    headers = parser.headers
    if "retry-after" in headers:
        extra["retry_after"] = headers["retry-after"]
    ratelimit = {k: v for k, v in headers.items() if k.startswith("x-ratelimit-")}
    if ratelimit:
        extra["ratelimit"] = ratelimit
    if parser.captured.injected_usage:
        extra["injected_usage"] = True


def _add_notes(parsed: Parsed, parser: "ExchangeParser") -> None:
    notes = parsed.notes
    notes.extend(parser.body.notes)
    notes.extend(parser.assembly.notes)
    if parser.captured.truncated:
        notes.append(
            "the proxy stopped keeping chunks, so only the kept part was parsed"
        )
    if parser.invalid_events:
        notes.append(f"{parser.invalid_events} events or lines were not valid JSON")
    if parser.dropped_final_event:
        notes.append(
            "the last event was cut off and is not valid JSON, so it was skipped"
        )
    if "upstream_closed" in (parsed.error_kind or ""):
        notes.append("the stream ended without its end marker ([DONE] or done: true)")

    total = parser.assembly.timeline_total
    if total > MAX_TIMELINE:
        notes.append(f"timeline keeps the first {MAX_TIMELINE} of {total} entries")
    if _usage_expected(parsed, parser):
        notes.append(_usage_missing_note(parser))


def _usage_expected(parsed: Parsed, parser: "ExchangeParser") -> bool:
    status = parser.captured.status
    return (
        parsed.usage is None
        and parsed.endpoint in _USAGE_ENDPOINTS
        and status is not None
        and 200 <= status < 300
    )


def _usage_missing_note(parser: "ExchangeParser") -> str:
    note = "usage missing: the upstream reported no token counts"
    body = parser.request.body or {}
    options = body.get("stream_options")
    requested = isinstance(options, dict) and options.get("include_usage") is True
    if parser.format == SSE and not requested:
        note += " (the request did not set stream_options.include_usage)"
    return note
