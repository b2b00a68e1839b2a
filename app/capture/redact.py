"""Redaction of request bodies before they are stored.

Inline images and audio make request bodies many megabytes large, so they are
replaced by a stub that keeps their size and sha256, and the rest is capped.
"""

import hashlib
import json
import re

from app.capture.sanitize import cap_text, parse_json, sanitize_text

# A data: URL header (RFC 2397): optional media type, optional ;parameters, comma.
_DATA_URL = re.compile(r"data:(?:[\w.+-]+/[\w.+-]+)?(?:;[\w.+=-]+)*,")

# Byte strings whose absence proves there is nothing to elide.
_MARKERS = (b"data:", b'"images"', b'"input_audio"')


def redact_request_body(
    body: bytes, max_body_bytes: int = 1_048_576, keep_images: bool = False
) -> tuple[object, bool, bool]:
    """Return (value to store as jsonb, truncated, sanitized).

    Inline data: URLs anywhere in the JSON, Ollama "images" base64 strings and
    OpenAI "input_audio" data are replaced by a stub such as
    "data:image/png;base64,<elided 20000000 chars sha256=...>" unless
    keep_images. truncated is True when anything was elided or cut. A body
    still over max_body_bytes is stored as a JSON string of its first bytes.
    Non-JSON bodies are stored as a JSON string, and an empty body gives None.
    """
    if not body:
        return None, False, False

    text = body.decode("utf-8", "replace")
    replaced = text.count("\ufffd") > body.count(b"\xef\xbf\xbd")
    value, valid, sanitized = parse_json(text)
    if not valid:
        return _store_text(text, max_body_bytes, replaced)

    elided = False
    if not keep_images and any(marker in body for marker in _MARKERS):
        try:
            value, elided = _elide(value, None)
        except RecursionError:
            return _store_text(text, max_body_bytes, replaced)

    if not elided and len(body) <= max_body_bytes:
        return value, False, replaced or sanitized

    serialized = json.dumps(value, ensure_ascii=False)
    stored, cut = cap_text(serialized, max_body_bytes)
    if not cut:
        return value, elided, replaced or sanitized
    return stored, True, replaced or sanitized


def _store_text(
    text: str, max_body_bytes: int, replaced: bool
) -> tuple[object, bool, bool]:
    clean, sanitized = sanitize_text(text)
    stored, cut = cap_text(clean, max_body_bytes)
    return stored, cut, replaced or sanitized


def _elide(value: object, key: str | None) -> tuple[object, bool]:
    if isinstance(value, str):
        return _elide_string(value, key)

    if isinstance(value, list):
        changed = False
        items = []
        for item in value:
            # Ollama sends images as bare base64 strings in an "images" array.
            clean, item_changed = _elide(item, "images" if key == "images" else None)
            items.append(clean)
            changed = changed or item_changed
        return items, changed

    if isinstance(value, dict):
        changed = False
        result = {}
        for name, item in value.items():
            inner_key = (
                "input_audio.data" if key == "input_audio" and name == "data" else name
            )
            clean, item_changed = _elide(item, inner_key)
            result[name] = clean
            changed = changed or item_changed
        return result, changed

    return value, False


def _elide_string(value: str, key: str | None) -> tuple[str, bool]:
    if key in ("images", "input_audio.data"):
        return _stub(value), True

    header = _DATA_URL.match(value)
    if header is None:
        return value, False
    return header.group(0) + _stub(value[header.end() :]), True


def _stub(payload: str) -> str:
    digest = hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<elided {len(payload)} chars sha256={digest}>"
