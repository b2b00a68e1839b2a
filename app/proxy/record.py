"""Turns what the proxy saw of an exchange into the row that gets stored."""

import json
import logging
from datetime import UTC, datetime

import msgspec

from app.capture import Captured, Parsed, parse_exchange, redact_request_body
from app.capture.model import empty_parsed
from app.pricing import Price, cost_usd
from app.proxy import exchange as ends
from app.proxy.exchange import Exchange
from app.proxy.metadata import Metadata, read_metadata
from app.proxy.redaction import mask_query, redact_headers
from app.settings import Settings

logger = logging.getLogger(__name__)

# Rows leave as compact UTF-8 JSON. A value of a type JSON lacks is stored as
# its str().
ROW_ENCODER = msgspec.json.Encoder(enc_hook=str)

# End reasons that decide the outcome by themselves, whatever the body contains.
OUTCOME_BY_END = {
    ends.END_CLIENT_DISCONNECTED: "client_disconnected",
    ends.END_IDLE_TIMEOUT: "upstream_timeout",
}


class RowBuilder:
    def __init__(self, settings: Settings, prices: list[Price]) -> None:
        self.settings = settings
        self.prices = prices

    def build(self, exchange: Exchange) -> dict[str, object]:
        meta = read_metadata(
            exchange.request_headers, self.settings.openwebui_jwt_secret
        )
        parsed = self.parse(exchange)
        outcome, error_kind, error_message = decide_outcome(exchange, parsed)
        request_body, request_truncated, request_sanitized = self.request_body(
            exchange, meta
        )
        usage = parsed.usage or {}
        user_id = meta.user_id
        if user_id is None and parsed.request_user:
            user_id, meta.user_source = parsed.request_user, "body"

        return {
            "id": exchange.id,
            "started_at": datetime.fromtimestamp(exchange.started_at, UTC).isoformat(),
            "method": exchange.method,
            "path": exchange.path,
            "query": mask_query(exchange.query) if exchange.query else None,
            "target_url": exchange.target,
            "endpoint": parsed.endpoint,
            "is_stream": parsed.is_stream,
            "model": parsed.model,
            "http_status": exchange.status_sent,
            "upstream_status": exchange.upstream_status,
            "outcome": outcome,
            "error_kind": error_kind,
            "error_message": error_message,
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "total_tokens": usage.get("total_tokens"),
            "cached_tokens": usage.get("cached_tokens"),
            "reasoning_tokens": usage.get("reasoning_tokens"),
            "usage_source": "reported" if parsed.usage else "none",
            "cost_usd": cost_usd(
                self.prices, parsed.model, parsed.usage, self.is_local(exchange)
            ),
            "latency_ms": exchange.latency_ms,
            "ttft_ms": parsed.ttft_ms,
            "first_byte_ms": parsed.first_byte_ms,
            "tokens_per_s": parsed.tokens_per_s,
            "user_id": user_id,
            "user_name": meta.user_name,
            "user_email": meta.user_email,
            "user_role": meta.user_role,
            "user_source": meta.user_source,
            "session_id": meta.session_id,
            "session_path": meta.session_path,
            "session_name": meta.session_name,
            "properties": properties(meta, parsed),
            "client_addr": exchange.client,
            "request_headers": redact_headers(exchange.request_headers),
            "response_headers": redact_headers(exchange.response_headers) or None,
            "request_body": request_body,
            "response_body": None if meta.omit_response else parsed.response_body,
            "request_bytes": len(exchange.request_body),
            "response_bytes": exchange.response_bytes,
            "request_truncated": request_truncated,
            "response_truncated": parsed.response_truncated
            or exchange.chunks_truncated,
            "request_omitted": meta.omit_request,
            "response_omitted": meta.omit_response,
            "prompt_text": None if meta.omit_request else parsed.prompt_text,
            "response_text": None if meta.omit_response else parsed.response_text,
            "reasoning_text": None if meta.omit_response else parsed.reasoning_text,
            "tool_calls": None if meta.omit_response else parsed.tool_calls,
            "choices": None if meta.omit_response else parsed.choices,
            "finish_reason": parsed.finish_reason,
            "timeline": parsed.timeline or None,
            "notes": meta.notes + parsed.notes,
            "sanitized": parsed.sanitized or request_sanitized,
        }

    def parse(self, exchange: Exchange) -> Parsed:
        captured = Captured(
            method=exchange.method,
            path=exchange.path,
            request_body=exchange.request_body,
            status=exchange.upstream_status,
            response_headers=exchange.response_headers,
            chunks=exchange.chunks,
            truncated=exchange.chunks_truncated,
            injected_usage=exchange.injected_usage,
        )
        try:
            return parse_exchange(captured, self.settings.store_body_max_bytes)
        except Exception:  # noqa: BLE001 - a parser bug must not lose the exchange
            logger.exception("parsing failed id=%s path=%s", exchange.id, exchange.path)
            parsed = empty_parsed()
            parsed.notes.append("the response could not be parsed; see the proxy log")
            return parsed

    def request_body(
        self, exchange: Exchange, meta: Metadata
    ) -> tuple[object, bool, bool]:
        if meta.omit_request:
            return None, False, False
        return redact_request_body(
            exchange.request_body,
            self.settings.store_body_max_bytes,
            keep_images=self.settings.store_images,
        )

    def is_local(self, exchange: Exchange) -> bool:
        """Return whether the exchange went to the configured (local) upstream."""
        default = self.settings.upstream_url.rstrip("/")
        return (
            bool(default)
            and exchange.target is not None
            and default.startswith(exchange.target)
        )


def decide_outcome(
    exchange: Exchange, parsed: Parsed
) -> tuple[str, str | None, str | None]:
    """Return (outcome, error_kind, error_message) for the stored row."""
    if exchange.end == ends.END_PROXY_ERROR:
        outcome = (
            "upstream_timeout"
            if exchange.error_type == "upstream_timeout"
            else "proxy_error"
        )
        return outcome, exchange.error_type, exchange.error_message
    if exchange.end in OUTCOME_BY_END:
        return (
            OUTCOME_BY_END[exchange.end],
            exchange.end,
            parsed.stream_error or exchange.error_message,
        )

    broken = exchange.end in (ends.END_UPSTREAM_CLOSED, ends.END_UPSTREAM_RESET)
    if parsed.stream_error is not None:
        kind = "stream_error"
        if broken:
            kind = f"stream_error,{exchange.end}"
        return "in_stream_error", kind, parsed.stream_error
    if broken:
        return "upstream_incomplete", exchange.end, exchange.error_message
    if exchange.upstream_status is not None and exchange.upstream_status >= 400:
        kind = parsed.error_kind or f"http_{exchange.upstream_status}"
        return "upstream_http_error", kind, parsed.error_message
    return "success", _without_end_guess(parsed.error_kind), None


def _without_end_guess(kind: str | None) -> str | None:
    """Drop the parser's upstream_closed guess: the proxy saw the body end cleanly.

    The parser infers an early close from a missing end marker ([DONE] or
    "done": true); only the proxy saw how the connection really ended.
    """
    if not kind:
        return kind
    parts = [part for part in kind.split(",") if part != "upstream_closed"]
    return ",".join(parts) or None


def properties(meta: Metadata, parsed: Parsed) -> dict[str, object]:
    """Return the client's properties plus the facts the parser found on the side.

    The client's Helicone-Property-* values win over a parsed fact of the same name.
    """
    values: dict[str, object] = {**parsed.extra, **meta.properties}
    if parsed.durations:
        values.setdefault("durations_ms", parsed.durations)
    return values


def encode_row(row: dict[str, object]) -> bytes:
    """Serialise a row as one JSON line that PostgreSQL text and jsonb accept.

    The exchange's credentials were already removed before it was spooled
    (redaction.scrub_credentials).
    """
    try:
        line = ROW_ENCODER.encode(row)
    except UnicodeEncodeError:
        # A lone surrogate that no parser sanitised is replaced, not fatal.
        text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
        line = text.encode("utf-8", "replace")
    if b"\\u0000" in line:
        # PostgreSQL text and jsonb cannot hold U+0000.
        line = line.replace(b"\\u0000", b"\\ufffd")
        line = line.replace(b'"sanitized":false', b'"sanitized":true')
    return line
