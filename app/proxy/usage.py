"""Optional injection of stream_options.include_usage into streamed requests.

OpenAI-compatible servers, Ollama among them, report token usage on a stream
only when the request asks for it. With LLMTAP_INJECT_STREAM_USAGE on, the
proxy asks on the client's behalf and removes the extra usage-only chunk from
what the client receives, so the change stays invisible to clients that index
choices[0] on every chunk. Ollama's native API reports usage anyway and is never
changed.
"""

import json
import re

# Paths whose streamed requests accept stream_options (OpenAI-compatible only).
INJECTABLE_SUFFIXES = ("/chat/completions", "/completions")


def inject_include_usage(path: str, body: bytes) -> tuple[bytes, bool]:
    """Return the body to forward and whether include_usage was added."""
    if not path.endswith(INJECTABLE_SUFFIXES) or b'"stream"' not in body:
        return body, False
    try:
        request = json.loads(body)
    except ValueError:
        return body, False
    if not isinstance(request, dict) or request.get("stream") is not True:
        return body, False

    options = request.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        return body, False
    if options is not None and not isinstance(options, dict):
        return body, False

    request["stream_options"] = {**(options or {}), "include_usage": True}
    return json.dumps(request, ensure_ascii=False).encode(), True


# A blank line ends an SSE event; lines end in CRLF, LF or CR.
EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


class UsageChunkFilter:
    """Drops SSE events that carry usage with an empty choices list.

    Complete events are forwarded as soon as their terminating blank line has
    arrived; only an incomplete event is held back until the rest of it comes.
    """

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self.pending + chunk
        forwarded: list[bytes] = []
        start = 0
        for match in EVENT_END.finditer(data):
            event = data[start : match.end()]
            if not _is_usage_only(event):
                forwarded.append(event)
            start = match.end()
        self.pending = data[start:]
        return b"".join(forwarded)


def _is_usage_only(event: bytes) -> bool:
    if b'"usage"' not in event:
        return False
    for line in event.splitlines():
        if not line.startswith(b"data:"):
            continue
        try:
            payload = json.loads(line[5:])
        except ValueError:
            return False
        return (
            isinstance(payload, dict)
            and payload.get("choices") == []
            and bool(payload.get("usage"))
        )
    return False
