"""Decoding of the captured response chunks and detection of the body format."""

from dataclasses import dataclass, field

from app.capture.decode import BodyDecoder

# Formats a response body can have. The parser splits each one differently.
SSE = "sse"
NDJSON = "ndjson"
JSON = "json"
TEXT = "text"

_SSE_STARTS = ("data:", "event:", "id:", "retry:", ":")


@dataclass(slots=True)
class DecodedBody:
    """The decoded text of a body, one piece per chunk, with decoding facts."""

    pieces: list[tuple[float, str]] = field(default_factory=list)
    text: str = ""
    first_byte_ms: float | None = None
    last_byte_ms: float | None = None
    error: str | None = None
    replaced: bool = False
    cut: bool = False
    notes: list[str] = field(default_factory=list)


def decode_body(
    chunks: list[tuple[float, bytes]], content_encoding: str | None
) -> DecodedBody:
    """Decode every chunk, keeping the arrival time of the text each one completes."""
    decoder = BodyDecoder(content_encoding)
    body = DecodedBody()

    for ms, raw in chunks:
        if not raw:
            continue
        if body.first_byte_ms is None:
            body.first_byte_ms = ms
        body.last_byte_ms = ms
        text = decoder.feed(raw)
        if text:
            body.pieces.append((ms, text))

    rest = decoder.finish()
    if rest and body.last_byte_ms is not None:
        body.pieces.append((body.last_byte_ms, rest))

    body.text = "".join(text for _, text in body.pieces)
    body.error = decoder.error
    body.replaced = decoder.replaced
    body.cut = decoder.cut
    body.notes = decoder.notes
    return body


def detect_format(content_type: str, text: str) -> str:
    """Return the body format from the Content-Type, or from the text when unclear."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "text/event-stream":
        return SSE
    if "ndjson" in media_type or "jsonl" in media_type or "json-seq" in media_type:
        return NDJSON
    if media_type.endswith("json"):
        return JSON
    return sniff_format(text)


def sniff_format(text: str) -> str:
    """Guess the format of a body whose Content-Type does not name it."""
    head = text[:256].lstrip("\ufeff \t\r\n")
    if head.startswith(_SSE_STARTS):
        return SSE
    if head.startswith(("{", "[")):
        # Several lines that each start an object are NDJSON, one object is JSON.
        stripped = text.strip()
        if "\n" in stripped and stripped.split("\n", 1)[1].lstrip().startswith("{"):
            return NDJSON
        return JSON
    return TEXT
