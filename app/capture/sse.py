"""Incremental Server-Sent Events splitter (WHATWG HTML, "Server-sent events").

Events end at a blank line. Within an event, `data:` lines are joined with
"\\n", `event:` names the event, `id:` and `retry:` are kept, and lines that
start with ":" are comments. One space after the colon is stripped; a second
space belongs to the value.
"""

from dataclasses import dataclass, field

from app.capture.lines import LineSplitter


@dataclass(slots=True)
class SseEvent:
    """One event, or a block of comment lines that carried no data."""

    data: str | None = None
    event: str | None = None
    id: str | None = None
    retry: str | None = None
    comments: list[str] = field(default_factory=list)
    size: int = 0  # characters of decoded text, terminators included
    complete: bool = True  # False for a final event cut off by the end of the body


class SseSplitter:
    """Turn decoded text, fed in arbitrary pieces, into SSE events."""

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._current = SseEvent()
        self._data: list[str] = []
        self._has_fields = False
        self._first_line = True

    def feed(self, text: str) -> list[SseEvent]:
        """Return the events that this piece of text completes."""
        return self._consume(self._lines.feed(text))

    def finish(self) -> list[SseEvent]:
        """Return the remaining events at the end of the body.

        A last event without its blank line is returned with complete=False, so
        the caller can still use it when its data is whole.
        """
        events = self._consume(self._lines.finish())
        if self._has_fields:
            event = self._dispatch()
            event.complete = False
            events.append(event)
        return events

    def _consume(self, lines: list[tuple[str, int]]) -> list[SseEvent]:
        events: list[SseEvent] = []
        for line, size in lines:
            if self._first_line:
                # The stream may start with a byte order mark, which is not data.
                line = line.removeprefix("\ufeff")
                self._first_line = False

            self._current.size += size
            if line:
                self._add_line(line)
            elif self._has_fields:
                events.append(self._dispatch())
        return events

    def _add_line(self, line: str) -> None:
        self._has_fields = True
        if line[0] == ":":
            self._current.comments.append(line[1:])
            return

        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]

        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._current.event = value
        elif name == "id":
            self._current.id = value
        elif name == "retry":
            self._current.retry = value

    def _dispatch(self) -> SseEvent:
        event = self._current
        if self._data:
            event.data = "\n".join(self._data)

        self._current = SseEvent()
        self._data = []
        self._has_fields = False
        return event
