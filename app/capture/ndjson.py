"""Incremental splitter for newline-delimited JSON (Ollama's native streams)."""

from dataclasses import dataclass

from app.capture.lines import LineSplitter
from app.capture.sanitize import parse_json


@dataclass(slots=True)
class NdjsonLine:
    """One non-blank line and its decoded JSON value, if it was valid JSON."""

    text: str
    value: object
    valid: bool
    sanitized: bool  # the value had NUL or a lone surrogate replaced
    size: int  # characters of decoded text, terminator included


class NdjsonSplitter:
    """Turn decoded text, fed in arbitrary pieces, into parsed JSON lines."""

    def __init__(self) -> None:
        self._lines = LineSplitter()

    def feed(self, text: str) -> list[NdjsonLine]:
        """Return the non-blank lines that this piece of text completes."""
        return [
            _parse_line(line, size)
            for line, size in self._lines.feed(text)
            if line.strip()
        ]

    def finish(self) -> list[NdjsonLine]:
        """Return the last line when the body did not end with a newline."""
        return [
            _parse_line(line, size)
            for line, size in self._lines.finish()
            if line.strip()
        ]


def _parse_line(line: str, size: int) -> NdjsonLine:
    value, valid, sanitized = parse_json(line)
    return NdjsonLine(line, value, valid, sanitized, size)
