"""Make text and JSON values safe for Postgres text and jsonb columns.

Postgres rejects NUL in text and jsonb (also as the escape \\u0000) and rejects
lone UTF-16 surrogates, which json.loads produces from escapes such as \\ud800.
Both are replaced by U+FFFD. jsonb also has no NaN or Infinity, so those
literals are rejected as invalid JSON and numbers too large for a float become
null.
"""

import json
import math
import re

import msgspec

REPLACEMENT = "\ufffd"

_UNSAFE_CHARS = re.compile("[\x00\ud800-\udfff]")

# JSON escapes that decode to NUL or to a surrogate. Without them, no walk is needed.
_UNSAFE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def sanitize_text(text: str) -> tuple[str, bool]:
    """Return the text with NUL and lone surrogates replaced, and whether any were."""
    if _UNSAFE_CHARS.search(text) is None:
        return text, False

    return _UNSAFE_CHARS.sub(REPLACEMENT, text), True


def needs_json_walk(raw_json: str) -> bool:
    """Return whether a JSON text may decode to strings that sanitize_text changes."""
    return "\\u" in raw_json and _UNSAFE_ESCAPE.search(raw_json) is not None


def sanitize_json(value: object) -> tuple[object, bool]:
    """Return a copy of a decoded JSON value with every string and key sanitized."""
    if isinstance(value, str):
        return sanitize_text(value)

    if isinstance(value, list):
        changed = False
        items = []
        for item in value:
            clean, item_changed = sanitize_json(item)
            items.append(clean)
            changed = changed or item_changed
        return items, changed

    if isinstance(value, dict):
        changed = False
        result = {}
        for key, item in value.items():
            clean_key, key_changed = sanitize_text(key)
            clean, item_changed = sanitize_json(item)
            result[clean_key] = clean
            changed = changed or key_changed or item_changed
        return result, changed

    return value, False


def cap_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut text to at most max_bytes of UTF-8 without splitting a character.

    Returns the text and whether it was cut.
    """
    # A character is at most 4 bytes, so a short text cannot exceed the cap.
    if len(text) * 4 <= max_bytes:
        return text, False

    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text, False

    return encoded[:max_bytes].decode("utf-8", "ignore"), True


def snippet(text: str | None, max_chars: int = 500) -> str | None:
    """Return a sanitized, whitespace-trimmed prefix of text for table display."""
    if text is None:
        return None

    clean, _ = sanitize_text(text.strip())
    if not clean:
        return None

    return clean[:max_chars]


def parse_json(text: str) -> tuple[object, bool, bool]:
    """Decode a JSON text into a value that is safe to store.

    Returns (value, valid, sanitized), with value None when the text is not JSON.
    """
    try:
        value, overflowed = msgspec.json.decode(text), False
    except (msgspec.MsgspecError, RecursionError):
        # msgspec is several times faster, but it rejects two things that
        # Python's parser reads: numbers that overflow a float and escapes of
        # lone surrogates. The slower parser decides those texts.
        try:
            value, overflowed = _decode_carefully(text)
        except (ValueError, RecursionError):
            return None, False, False

    if not needs_json_walk(text):
        return value, True, overflowed

    try:
        clean, changed = sanitize_json(value)
    except RecursionError:
        # Nesting close to the interpreter limit: treat the text as not JSON.
        return None, False, False
    return clean, True, changed or overflowed


def _decode_carefully(text: str) -> tuple[object, bool]:
    """Decode with Python's parser, and report whether a number overflowed."""
    overflowed = False

    def finite_float(token: str) -> float | None:
        # A number such as 1e400 overflows to infinity, which jsonb cannot store.
        nonlocal overflowed
        number = float(token)
        if math.isinf(number):
            overflowed = True
            return None
        return number

    value = json.loads(text, parse_constant=_reject_constant, parse_float=finite_float)
    return value, overflowed


def _reject_constant(name: str) -> object:
    # Python accepts NaN and Infinity, but they are not JSON and jsonb rejects them.
    raise ValueError(f"{name} is not valid JSON")
