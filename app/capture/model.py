"""The captured exchange that goes into the parser and the values that come out."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Captured:
    """One proxied request with the upstream response, as the proxy recorded it."""

    method: str
    path: str
    request_body: bytes
    status: int | None
    response_headers: list[tuple[str, str]]
    # (ms since the request head arrived, raw bytes still content-encoded)
    chunks: list[tuple[float, bytes]]
    truncated: bool
    injected_usage: bool = False


@dataclass(slots=True)
class Parsed:
    """Values stored for one exchange, each described in docs/fields.md."""

    endpoint: str
    is_stream: bool
    model: str | None
    request_user: str | None
    prompt_text: str | None
    response_text: str | None
    reasoning_text: str | None
    choices: list[dict] | None
    tool_calls: list[dict] | None
    finish_reason: str | None
    usage: dict | None
    tokens_per_s: float | None
    durations: dict | None
    first_byte_ms: float | None
    ttft_ms: float | None
    done: bool
    stream_error: str | None
    error_message: str | None
    error_kind: str | None
    response_body: object
    response_truncated: bool
    timeline: list[list]
    notes: list[str]
    sanitized: bool
    extra: dict = field(default_factory=dict)


def empty_parsed(endpoint: str = "other") -> Parsed:
    """Return a Parsed with every value unknown, for the parser to fill in."""
    return Parsed(
        endpoint=endpoint,
        is_stream=False,
        model=None,
        request_user=None,
        prompt_text=None,
        response_text=None,
        reasoning_text=None,
        choices=None,
        tool_calls=None,
        finish_reason=None,
        usage=None,
        tokens_per_s=None,
        durations=None,
        first_byte_ms=None,
        ttft_ms=None,
        done=False,
        stream_error=None,
        error_message=None,
        error_kind=None,
        response_body=None,
        response_truncated=False,
        timeline=[],
        notes=[],
        sanitized=False,
    )
