"""Request limits, target checks and clients that leave, on a stack of its own."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.proxy.errors import ProxyError
from app.proxy.targets import TargetPolicy
from app.settings import Settings
from tests.cases.helpers import MARKER_HEADER as MARKER
from tests.cases.helpers import SSE, Reply, Stage, fetch
from tests.support import formats
from tests.support.appliance import Appliance
from tests.support.upstream import Script, ScriptedUpstream, send, sleep

from .helpers import CHAT, CHAT_REQUEST, migrated_appliance
from .servers import FaultServer

MAX_REQUEST_BYTES = 64 * 1024
# A refusal made before connecting anywhere comes back this fast.
IMMEDIATE_S = 0.5
# The proxy must close the upstream connection this soon after the client left.
CLOSE_WITHIN_S = 1.0


@dataclass
class EdgeStack:
    appliance: Appliance
    upstream_port: int
    allowed_targets: str


@pytest.fixture(scope="module")
def edge(upstream: ScriptedUpstream) -> Iterator[EdgeStack]:
    """A stack with a small body limit and an allow-list with name and port variants."""
    port = int(upstream.url.rsplit(":", 1)[1])
    # Port 80 is the default port of http. Nothing listens there in the tests,
    # so an accepted request gets a 502 from the proxy, never a 403.
    allowed = f"http://localhost:{port},http://127.0.0.1"
    settings = {
        "max_request_bytes": str(MAX_REQUEST_BYTES),
        "allowed_targets": allowed,
        "upstream_connect_timeout_s": "2",
    }
    with migrated_appliance(upstream.url, **settings) as appliance:
        yield EdgeStack(appliance, port, allowed)


def chunked(body: bytes, size: int = 8192) -> Iterator[bytes]:
    """Yield the body in pieces, so httpx sends it with chunked framing."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_oversized_body_gets_json_413(
    edge: EdgeStack, stage: Stage, entry: str, framing: str
) -> None:
    """A body over LLMTAP_MAX_REQUEST_BYTES gets 413 in the OpenAI error shape."""
    appliance = edge.appliance
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    headers = stage.play("POST", CHAT, Script(headers=SSE, steps=[send(b"x")]))
    headers["Content-Type"] = "application/json"
    headers["Helicone-Request-Id"] = str(uuid.uuid4())
    body = b'{"pad":"' + b"a" * MAX_REQUEST_BYTES + b'"}'
    content = body if framing == "content-length" else chunked(body)

    with httpx.Client(timeout=30) as client:
        response = client.post(base_url + CHAT, headers=headers, content=content)
    error = response.json()["error"]

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert error["type"] == "request_too_large"
    assert error["code"] == "request_too_large"
    assert "LLMTAP_MAX_REQUEST_BYTES" in error["message"]
    assert not stage.all_seen(headers, minimum=1, timeout_s=0.5)
    if entry == "proxy":
        row = appliance.exchange(headers["Helicone-Request-Id"])
        assert row is not None
        assert row["http_status"] == 413
        assert row["outcome"] == "proxy_error"
        assert row["error_kind"] == "request_too_large"


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
def test_body_at_limit_forwarded(edge: EdgeStack, stage: Stage, entry: str) -> None:
    appliance = edge.appliance
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    reply_body = formats.chat_completion("ok")
    script = Script(
        headers=[("Content-Type", "application/json")], steps=[send(reply_body)]
    )
    headers = stage.play("POST", CHAT, script)
    headers["Content-Type"] = "application/json"
    body = b'{"pad":"' + b"a" * (MAX_REQUEST_BYTES - 10) + b'"}'

    with httpx.Client(timeout=30) as client:
        response = client.post(base_url + CHAT, headers=headers, content=body)

    assert len(body) == MAX_REQUEST_BYTES
    assert response.status_code == 200
    assert stage.seen(headers).body == body


def settings_of(edge: EdgeStack) -> Settings:
    return Settings(
        upstream_url=f"http://127.0.0.1:{edge.upstream_port}",
        allowed_targets=edge.allowed_targets,
    )


REJECTED_TARGETS = {
    "other-host": "http://127.0.0.2:{port}",
    "other-port": "http://127.0.0.1:{other_port}",
    "metadata-address": "http://169.254.169.254",
    "metadata-path": "http://169.254.169.254/latest/meta-data/",
    "link-local-v6": "http://[fe80::1]:{port}",
    "unspecified-address": "http://0.0.0.0:{port}",
    "https-of-allowed-http": "https://127.0.0.1:{port}",
    "file-scheme": "file:///etc/passwd",
    "gopher-scheme": "gopher://127.0.0.1:{port}/",
    "userinfo-then-other-host": "http://127.0.0.1:{port}@127.0.0.2:{port}",
    "userinfo-allowed-name": "http://localhost:{port}@127.0.0.2",
    "backslash-userinfo": "http://127.0.0.1:{port}\\@127.0.0.2",
    "decimal-ip": "http://2130706434:{port}",
}


def target_value(template: str, edge: EdgeStack) -> str:
    return template.format(port=edge.upstream_port, other_port=edge.upstream_port + 1)


def post_with_target(edge: EdgeStack, client: httpx.Client, value: str) -> Reply:
    """Send a chat request to the proxy port with Helicone-Target-URL set to value."""
    headers = {"Helicone-Target-URL": value, "Content-Type": "application/json"}
    return fetch(
        client,
        "POST",
        edge.appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )


@pytest.mark.parametrize("case", list(REJECTED_TARGETS))
def test_disallowed_target_rejected(
    edge: EdgeStack, client: httpx.Client, case: str
) -> None:
    """A target outside the allow-list gets an immediate 403 naming the setting."""
    value = target_value(REJECTED_TARGETS[case], edge)
    # The same policy must reject it in this process first, because a bug could
    # otherwise make the request below connect somewhere.
    with pytest.raises(ProxyError):
        TargetPolicy(settings_of(edge)).resolve(value.encode())

    reply = post_with_target(edge, client, value)
    error = json.loads(reply.body)["error"]

    assert reply.status == 403, reply.body
    assert error["type"] == "target_not_allowed"
    assert "LLMTAP_ALLOWED_TARGETS" in error["message"]
    assert reply.headers_at < IMMEDIATE_S


INVALID_TARGETS = {
    "no-scheme": "127.0.0.1:{port}",
    "name-and-port-only": "localhost:{port}",
    "no-host": "http://",
}


@pytest.mark.parametrize("case", list(INVALID_TARGETS))
def test_invalid_target_gets_400(
    edge: EdgeStack, client: httpx.Client, case: str
) -> None:
    """A value that is no absolute URL gets an immediate 400 naming the fix."""
    value = target_value(INVALID_TARGETS[case], edge)
    with pytest.raises(ProxyError):
        TargetPolicy(settings_of(edge)).resolve(value.encode())

    reply = post_with_target(edge, client, value)
    error = json.loads(reply.body)["error"]

    assert reply.status == 400, reply.body
    assert error["type"] == "target_invalid"
    assert "absolute origin" in error["message"]
    assert reply.headers_at < IMMEDIATE_S


ACCEPTED_TARGETS = {
    "upper-case-scheme-and-host": ("HTTP://LOCALHOST:{port}", 200),
    "mixed-case-host": ("http://LocalHost:{port}/ignored/path", 200),
    "userinfo-dropped": ("http://someone@localhost:{port}", 200),
    "explicit-default-port": ("http://127.0.0.1:80", 502),
    "upper-case-default-port": ("HTTP://127.0.0.1:80/", 502),
    "implicit-default-port": ("http://127.0.0.1", 502),
}


@pytest.mark.parametrize("case", list(ACCEPTED_TARGETS))
def test_allowed_target_variants_accepted(
    edge: EdgeStack, stage: Stage, client: httpx.Client, case: str
) -> None:
    """Case and default-port variants of an allowed origin are the same origin."""
    template, status = ACCEPTED_TARGETS[case]
    value = target_value(template, edge)
    script = Script(
        headers=[("Content-Type", "application/json")],
        steps=[send(formats.chat_completion("ok"))],
    )
    headers = stage.play("POST", CHAT, script)
    headers["Helicone-Target-URL"] = value
    headers["Content-Type"] = "application/json"
    reply = fetch(
        client,
        "POST",
        edge.appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )

    assert reply.status == status, reply.body
    if status == 200:
        assert stage.seen(headers).path == CHAT


def raw_request(port: int, headers: dict[str, str], body: bytes) -> socket.socket:
    """Open a connection, send one HTTP/1.1 request and return the socket."""
    lines = [f"POST {CHAT} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    connection.sendall(head + body)
    return connection


def long_stream() -> Script:
    steps = []
    for number in range(100):
        steps += [send(formats.chat_chunk({"content": f"w{number} "})), sleep(100)]
    return Script(headers=SSE, steps=steps)


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
@pytest.mark.parametrize("moment", ["before-first-byte", "after-first-byte"])
def test_client_leaving_closes_upstream(
    edge: EdgeStack, stage: Stage, entry: str, moment: str
) -> None:
    """The upstream connection closes within a second of the client leaving."""
    appliance = edge.appliance
    script = long_stream()
    if moment == "before-first-byte":
        script = Script(headers=SSE, steps=script.steps, delay_ms=10_000)
    headers = stage.play("POST", CHAT, script)
    headers["Content-Type"] = "application/json"
    headers["Helicone-Request-Id"] = str(uuid.uuid4())
    port = appliance.ports["PROXY_PORT" if entry == "proxy" else "ENTRY_PORT"]

    connection = raw_request(port, headers, CHAT_REQUEST)
    seen = stage.seen(headers)
    if moment == "after-first-byte":
        first = connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
    else:
        time.sleep(0.3)
    connection.close()
    left_at = time.monotonic()
    open_s = stage.upstream.wait_closed(seen, timeout_s=5)
    row = appliance.exchange(headers["Helicone-Request-Id"], timeout_s=10)

    assert open_s is not None, "the proxy kept the upstream connection open"
    assert seen.closed_at is not None
    assert seen.closed_at - left_at <= CLOSE_WITHIN_S
    assert row is not None
    assert row["outcome"] == "client_disconnected"
    assert row["error_kind"] == "client_disconnected"


REQUEST_TARGETS = {
    "userinfo-prefix": "@127.0.0.1:{other}/v1/chat/completions",
    "absolute-form": "http://127.0.0.1:{other}/v1/chat/completions",
    "double-slash": "//127.0.0.1:{other}/v1/chat/completions",
    "backslash-userinfo": "\\@127.0.0.1:{other}/v1/chat/completions",
    "asterisk-userinfo": "*@127.0.0.1:{other}",
    "asterisk-then-path": "*@127.0.0.1:{other}/v1/chat/completions",
}


@pytest.mark.parametrize("case", list(REQUEST_TARGETS))
def test_request_target_keeps_upstream_host(
    edge: EdgeStack, stage: Stage, case: str
) -> None:
    """The request line's target cannot move the exchange to another origin.

    Joined to the origin as text, a target that does not start with "/" would
    turn the origin into userinfo and name another host and port.
    """
    with FaultServer("fin") as other:
        target = REQUEST_TARGETS[case].format(other=other.port)
        headers = stage.play("*", "/v1/chat/completions", Script(steps=[send(b"{}")]))
        head = (
            f"POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"{MARKER}: {headers[MARKER]}\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\n{}"
        )
        port = edge.appliance.ports["PROXY_PORT"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(head.encode())
            reply = b""
            while chunk := connection.recv(65536):
                reply += chunk
        time.sleep(0.2)

        assert reply.startswith(b"HTTP/1.1 ")
        assert other.accepted == 0, f"the proxy connected to {target}: {reply[:200]!r}"
