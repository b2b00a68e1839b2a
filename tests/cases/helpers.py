"""Shared pieces of the failure-case tests: scripted routes, requests, checks.

Every test plays its own script on the session's scripted upstream. The script
is keyed by a marker header that the proxy forwards like any other end-to-end
header, so a late retry or a stray request of another test never gets the
wrong reply. The same marker goes into Helicone-User-Id, which the proxy
stores in `user_id`, so a test can also find its rows without an exchange id.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.upstream import Script, ScriptedUpstream, SeenRequest, Step, send

MARKER_HEADER = "X-Llmtap-Case"
AUTHORIZATION = "Bearer sk-test-PLACEHOLDER"
SSE = [("Content-Type", "text/event-stream")]
NDJSON = [("Content-Type", "application/x-ndjson")]
JSON = [("Content-Type", "application/json")]
REPLACEMENT_CHARACTER = "\N{REPLACEMENT CHARACTER}".encode()

# Hop-by-hop headers (RFC 9110, section 7.6.1) plus the framing headers, which
# a proxy may legitimately change when it re-frames a body.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
}
FRAMING = {"content-length", "transfer-encoding"}

ScriptSource = Script | Callable[[SeenRequest], Script]


@dataclass
class Reply:
    """What the client received for one request, read as raw bytes.

    `body` is the body after chunked framing is removed but before any
    Content-Encoding is decoded. `error` names the httpx exception when the
    body ended abnormally (a missing last chunk or a reset), else None.
    """

    status: int
    headers: httpx.Headers
    body: bytes
    error: str | None
    sent_at: float
    headers_at: float
    arrivals: list[tuple[float, bytes]] = field(default_factory=list)

    @property
    def exchange_id(self) -> str | None:
        """The proxy's Helicone-Id response header."""
        return self.headers.get("helicone-id")

    @property
    def sha256(self) -> str:
        """The sha256 of the body bytes, hex."""
        return hashlib.sha256(self.body).hexdigest()


class Stage:
    """Plays one script per marker on a shared scripted upstream."""

    def __init__(self, upstream: ScriptedUpstream) -> None:
        self.upstream = upstream
        self.scripts: dict[str, ScriptSource] = {}

    def play(self, method: str, path: str, script: ScriptSource) -> dict[str, str]:
        """Route `script` for `method` `path` and return the request headers.

        The headers carry the marker that selects the script, the target and
        the placeholder credential that every case sends.
        """
        marker = uuid.uuid4().hex
        self.scripts[marker] = script
        self.upstream.route(method, path, self.dispatch)
        return {
            MARKER_HEADER: marker,
            "Helicone-Target-URL": self.upstream.url,
            "Helicone-User-Id": marker,
            "Authorization": AUTHORIZATION,
        }

    def seen(self, headers: Mapping[str, str], timeout_s: float = 5) -> SeenRequest:
        """Return the first request the upstream saw with the marker in `headers`."""
        requests = self.all_seen(headers, minimum=1, timeout_s=timeout_s)
        assert requests, "the upstream saw no request from this test"
        return requests[0]

    def all_seen(
        self, headers: Mapping[str, str], minimum: int = 1, timeout_s: float = 5
    ) -> list[SeenRequest]:
        """Wait until `minimum` requests with the marker arrived, and return them."""
        marker = headers[MARKER_HEADER]
        deadline = time.monotonic() + timeout_s
        while True:
            found = [
                r for r in self.upstream.requests if r.header(MARKER_HEADER) == marker
            ]
            if len(found) >= minimum or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def dispatch(self, request: SeenRequest) -> Script:
        """Return the script whose marker the request carries, else a 404."""
        script = self.scripts.get(request.header(MARKER_HEADER) or "")
        if script is None:
            message = b'{"error":{"message":"no case script for this marker"}}'
            return Script(
                status=404, headers=JSON, steps=[send(message)], chunked=False
            )
        if isinstance(script, Script):
            return script
        return script(request)


def fetch(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    drop_headers: tuple[str, ...] = (),
) -> Reply:
    """Send one request and read the whole reply, recording arrival times.

    `drop_headers` removes headers that httpx adds by itself, such as
    Accept-Encoding, so a case can send a request without them.
    """
    request = client.build_request(method, url, headers=dict(headers), content=content)
    for name in drop_headers:
        request.headers.pop(name, None)

    sent_at = time.monotonic()
    response = client.send(request, stream=True)
    reply = Reply(
        status=response.status_code,
        headers=response.headers,
        body=b"",
        error=None,
        sent_at=sent_at,
        headers_at=time.monotonic() - sent_at,
    )
    try:
        _read_body(response, reply)
    finally:
        response.close()
    return reply


def _read_body(response: httpx.Response, reply: Reply) -> None:
    pieces = []
    try:
        for piece in response.iter_raw():
            reply.arrivals.append((time.monotonic() - reply.sent_at, piece))
            pieces.append(piece)
    except (httpx.RemoteProtocolError, httpx.ReadError) as error:
        reply.error = type(error).__name__
    reply.body = b"".join(pieces)


def body_of(steps: list[Step]) -> bytes:
    """Return the body bytes a script's steps write, in order."""
    return b"".join(step.data for step in steps if step.kind in ("send", "raw"))


def sha256(data: bytes) -> str:
    """Return the hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def end_to_end_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return the headers a proxy must pass unchanged, names in lower case."""
    skipped = HOP_BY_HOP | FRAMING
    return [
        (name.lower(), value) for name, value in headers if name.lower() not in skipped
    ]


def header_names(request: SeenRequest) -> set[str]:
    """Return the lower-case header names of a request the upstream saw."""
    return {name.lower() for name, _ in request.headers}


def stored(appliance: Any, reply: Reply, timeout_s: float = 10) -> dict[str, Any]:
    """Return the stored row of the reply's exchange, failing when none appears."""
    assert reply.exchange_id, "the response carries no Helicone-Id header"
    row = appliance.exchange(reply.exchange_id, timeout_s=timeout_s)
    assert row is not None, f"exchange {reply.exchange_id} was not stored"
    return row


def rows_for_user(
    appliance: Any, user_id: str, minimum: int, timeout_s: float = 10
) -> list[dict[str, Any]]:
    """Wait until `minimum` rows with `user_id` are stored, and return them all."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = appliance.query(
            "SELECT * FROM llmtap.exchange WHERE user_id = %s ORDER BY started_at",
            user_id,
        )
        if len(rows) >= minimum or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def header_map(value: Any) -> dict[str, Any]:
    """Return stored headers as a dict with lower-case names.

    The row may store headers as an object or as a list of name-value pairs.
    """
    if isinstance(value, dict):
        return {str(name).lower(): item for name, item in value.items()}
    return {str(name).lower(): item for name, item in value or []}


def row_text(appliance: Any, exchange_id: str, *, without: tuple[str, ...] = ()) -> str:
    """Return the stored row as JSON text, to search it for secrets.

    `without` leaves out columns that hold what the scripted upstream sent
    back on purpose, such as an echoed request target.
    """
    rows = appliance.query(
        "SELECT (to_jsonb(e) - %s::text[])::text AS text"
        " FROM llmtap.exchange e WHERE id = %s",
        list(without),
        exchange_id,
    )
    assert rows, f"exchange {exchange_id} was not stored"
    return str(rows[0]["text"])


def log_offset(appliance: Any) -> int:
    """Return the current size of the appliance's combined log, in bytes."""
    try:
        return int(appliance.log_path.stat().st_size)
    except FileNotFoundError:
        return 0


def log_since(appliance: Any, offset: int) -> str:
    """Return what the appliance's processes logged after `offset`."""
    with appliance.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", errors="replace")
