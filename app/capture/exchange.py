"""Turn one captured exchange into the values stored for it."""

from collections.abc import Callable

from app.capture import ollama, openai
from app.capture.assembly import Assembly
from app.capture.body import JSON, NDJSON, SSE, DecodedBody, decode_body, detect_format
from app.capture.errors import find_stream_error, http_error_kind, http_error_message
from app.capture.model import Captured, Parsed, empty_parsed
from app.capture.ndjson import NdjsonSplitter
from app.capture.request import (
    OLLAMA_STREAMING,
    RequestInfo,
    classify_path,
    read_request,
)
from app.capture.result import store_result
from app.capture.sanitize import cap_text, parse_json, sanitize_text
from app.capture.sse import SseEvent, SseSplitter

Handler = Callable[[Assembly, dict, str | None], str]


def _apply_any(assembly: Assembly, obj: dict, event_name: str | None = None) -> str:
    """Pick a handler by the shape of the object, for endpoints of no known family."""
    event_type = obj.get("type")
    if "choices" in obj:
        return openai.apply_chat(assembly, obj)
    if obj.get("object") == "response" or (
        isinstance(event_type, str) and event_type.startswith("response.")
    ):
        return openai.apply_responses(assembly, obj, event_name)
    if "done" in obj or "message" in obj:
        return ollama.apply_generation(assembly, obj)
    # Anthropic's Messages API ends its stream with a message_stop event.
    if event_type == "message_stop":
        assembly.done = True
        return "done"
    return openai.apply_usage_only(assembly, obj)


HANDLERS: dict[str, Handler] = {
    "openai.chat": openai.apply_chat,
    "openai.completions": openai.apply_chat,
    "openai.responses": openai.apply_responses,
    "openai.embeddings": openai.apply_usage_only,
    "openai.models": openai.apply_usage_only,
    "ollama.chat": ollama.apply_generation,
    "ollama.generate": ollama.apply_generation,
    "ollama.embed": ollama.apply_embed,
    "ollama.embeddings": ollama.apply_embed,
    "ollama.tags": ollama.apply_info,
    "ollama.show": ollama.apply_info,
    "ollama.ps": ollama.apply_info,
    "ollama.version": ollama.apply_info,
    "ollama.pull": ollama.apply_pull,
    "other": _apply_any,
}


class ExchangeParser:
    """Parse one exchange: request fields, response body, then derived values."""

    def __init__(self, captured: Captured, max_body_bytes: int) -> None:
        self.captured = captured
        self.max_body_bytes = max_body_bytes
        self.endpoint = classify_path(captured.path, captured.method)
        self.handler = HANDLERS[self.endpoint]
        self.headers = _header_map(captured.response_headers)
        self.assembly = Assembly()
        self.parsed = empty_parsed(self.endpoint)
        self.request: RequestInfo = read_request(captured.request_body, self.endpoint)
        self.body = DecodedBody()
        self.format = ""
        self.json_value: object = None
        self.json_valid = False
        self.invalid_events = 0
        self.dropped_final_event = False
        self.valid_lines = 0

    def run(self) -> Parsed:
        """Return the Parsed for the exchange."""
        if self.captured.status is None:
            self.parsed.notes.append("no response arrived from the upstream")
        else:
            self.body = decode_body(
                self.captured.chunks, self.headers.get("content-encoding")
            )
            self.format = detect_format(
                self.headers.get("content-type", ""), self.body.text
            )
            self._apply_body()

        return store_result(self)

    def _apply_body(self) -> None:
        if self.format == JSON:
            self._apply_json()
        if self.format == SSE:
            self._apply_sse()
        elif self.format == NDJSON:
            self._apply_ndjson()

    def _apply_json(self) -> None:
        text = self.body.text
        if not text.strip():
            return

        value, valid, sanitized = parse_json(text)
        self.assembly.sanitized |= sanitized
        if valid:
            self.json_value = value
            self.json_valid = True
            self._apply_value(value, None)
            return

        # A body labelled JSON that is not one JSON value may still be a stream.
        stripped = text.lstrip("\ufeff \t\r\n")
        if stripped.startswith(("data:", ":")):
            self.format = SSE
        elif "\n" in text.strip():
            self.format = NDJSON
        else:
            self.parsed.notes.append("response body is not valid JSON")

    def _apply_sse(self) -> None:
        splitter = SseSplitter()
        for ms, text in self.body.pieces:
            for event in splitter.feed(text):
                self._apply_event(event, ms)

        last_ms = self.body.last_byte_ms or 0.0
        for event in splitter.finish():
            self._apply_event(event, last_ms)

    def _apply_event(self, event: SseEvent, ms: float) -> None:
        if event.data is None:
            self.assembly.record(
                ms, event.size, "comment" if event.comments else "other"
            )
            return

        if event.data.strip() == "[DONE]":
            self.assembly.done = True
            self.assembly.record(ms, event.size, "done")
            return

        value, valid, sanitized = parse_json(event.data)
        self.assembly.sanitized |= sanitized
        if valid:
            self._apply_value(value, event.event, ms, event.size)
        elif event.event == "error":
            text, _ = sanitize_text(event.data.strip())
            self._apply_value(text, "error", ms, event.size)
        elif not event.complete:
            self.dropped_final_event = True
        else:
            self.invalid_events += 1
            self.assembly.record(ms, event.size, "other")

    def _apply_ndjson(self) -> None:
        splitter = NdjsonSplitter()
        last_ms = self.body.last_byte_ms or 0.0
        batches = [(ms, splitter.feed(text)) for ms, text in self.body.pieces]
        batches.append((last_ms, splitter.finish()))

        for ms, lines in batches:
            for line in lines:
                self.assembly.sanitized |= line.sanitized
                if line.valid:
                    self.valid_lines += 1
                    self._apply_value(line.value, None, ms, line.size)
                else:
                    self.invalid_events += 1
                    self.assembly.record(ms, line.size, "other")

    def _apply_value(
        self,
        value: object,
        event_name: str | None,
        ms: float | None = None,
        size: int = 0,
    ) -> None:
        """Apply one decoded JSON value. ms is None for a whole non-stream body."""
        kind = "other"
        if isinstance(value, dict):
            # Error objects go through the handler too: response.failed ends a stream.
            kind = self.handler(self.assembly, value, event_name)

        message = find_stream_error(value, event_name)
        if message is not None:
            self.assembly.add_stream_error(message)
            kind = "error"

        if ms is not None:
            self.assembly.record(ms, size, kind)

    @property
    def is_stream(self) -> bool:
        """Whether the exchange streamed, from the response first, then the request."""
        if self.format == SSE or (self.format == NDJSON and self.valid_lines > 1):
            return True
        if self.request.stream is not None:
            return self.request.stream
        return self.endpoint in OLLAMA_STREAMING

    def error_message(self) -> str | None:
        """Return the message of an upstream HTTP error, or None below status 400."""
        status = self.captured.status
        if status is None or status < 400:
            return None

        if self.json_valid:
            message = http_error_message(self.json_value, True, self.body.text)
        elif self.assembly.stream_error is not None:
            message = self.assembly.stream_error
        else:
            message = http_error_message(None, False, self.body.text)
        clean, _ = sanitize_text(message)
        return clean

    def error_kinds(self) -> list[str]:
        """Return the error kinds that apply, most significant first."""
        status = self.captured.status
        kinds = []
        if status is not None and status >= 400:
            kinds.append(http_error_kind(status))
        elif self.assembly.stream_error is not None:
            kinds.append("in_stream_error")

        if status is not None and status < 400 and self._ended_early():
            kinds.append("upstream_closed")
        if self.body.error is not None:
            kinds.append("undecodable_body")
        elif status is not None and status < 400 and self._invalid_json_body():
            kinds.append("invalid_json")
        return kinds

    def _ended_early(self) -> bool:
        # NOTE: the capture does not say how the connection ended, so a stream
        # that ends cleanly but without its end marker also counts as closed.
        if self.format not in (SSE, NDJSON) or self.assembly.done:
            return False
        # A capture the proxy cut short cannot show how the stream ended.
        return not self.captured.truncated and self.endpoint != "other"

    def _invalid_json_body(self) -> bool:
        return (
            self.format == JSON and not self.json_valid and bool(self.body.text.strip())
        )

    def stored_text(self) -> tuple[str, bool, bool]:
        """Return the body text to store, whether it was cut, and whether sanitized."""
        text, sanitized = sanitize_text(self.body.text)
        text, cut = cap_text(text, self.max_body_bytes)
        return text, cut, sanitized


def _header_map(headers: list[tuple[str, str]]) -> dict[str, str]:
    # A header sent twice (Content-Encoding may be) is joined as HTTP allows.
    result: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        result[key] = f"{result[key]}, {value}" if key in result else value
    return result


def parse_exchange(captured: Captured, max_body_bytes: int = 1_048_576) -> Parsed:
    """Parse a captured exchange into the values stored for it.

    Any Exception raised inside the parser is caught: the result is then a
    Parsed with only the endpoint and a note naming the failure, so the
    exchange is still logged. The fuzz tests check that input never gets there.
    """
    try:
        return ExchangeParser(captured, max_body_bytes).run()
    except Exception as exc:  # a parser bug must not lose the log row
        parsed = empty_parsed(_safe_endpoint(captured))
        parsed.notes.append(f"parser failed: {type(exc).__name__}: {exc}"[:500])
        return parsed


def _safe_endpoint(captured: Captured) -> str:
    try:
        return classify_path(captured.path, captured.method)
    except Exception:  # the path itself may be what broke the parser
        return "other"
