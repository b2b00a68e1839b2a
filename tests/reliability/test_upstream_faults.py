"""Upstream faults before and after the response started, on a stack of its own.

Before the response starts the client must get an OpenAI-shaped 502 or 504.
After it started the client must see an abnormally ended body, never a clean
end that would pass a partial response off as complete.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cases.helpers import SSE, Reply, Stage, body_of, fetch, stored
from tests.support import formats
from tests.support.appliance import Appliance, free_port
from tests.support.upstream import (
    Script,
    ScriptedUpstream,
    Step,
    close,
    reset,
    send,
    sleep,
)

from .helpers import CHAT, CHAT_REQUEST, STREAM_REQUEST, migrated_appliance
from .servers import FaultServer, self_signed_context

HEADER_TIMEOUT_S = 2
CONNECT_TIMEOUT_S = 2
IDLE_TIMEOUT_S = 1
# An error the proxy makes itself, before any upstream byte, comes this fast.
QUICK_ERROR_S = 1.0
JSON = [("Content-Type", "application/json")]


@dataclass
class FaultStack:
    appliance: Appliance
    targets: dict[str, str]


@pytest.fixture(scope="module")
def faults(
    upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultStack]:
    """A stack whose allow-list names every faulty target, with short timeouts."""
    context = self_signed_context(Path(tmp_path_factory.mktemp("tls")))
    upstream_port = upstream.url.rsplit(":", 1)[1]
    with (
        FaultServer("fin") as fin,
        FaultServer("rst") as rst,
        FaultServer("http") as plain,
        FaultServer("tls", context) as tls,
    ):
        targets = {
            "refused": f"http://127.0.0.1:{free_port()}",
            "fin-before-headers": f"http://127.0.0.1:{fin.port}",
            "rst-before-headers": f"http://127.0.0.1:{rst.port}",
            "tls-to-plain-http": f"https://127.0.0.1:{plain.port}",
            "tls-to-silent-server": f"https://127.0.0.1:{upstream_port}",
            "tls-self-signed": f"https://127.0.0.1:{tls.port}",
        }
        settings = {
            "upstream_connect_timeout_s": str(CONNECT_TIMEOUT_S),
            "upstream_header_timeout_s": str(HEADER_TIMEOUT_S),
            "upstream_idle_timeout_s": str(IDLE_TIMEOUT_S),
            "allowed_targets": ",".join(targets.values()),
        }
        with migrated_appliance(upstream.url, **settings) as appliance:
            yield FaultStack(appliance, targets)


def request_to(client: httpx.Client, appliance: Appliance, target: str) -> Reply:
    headers = {
        "Helicone-Target-URL": target,
        "Helicone-User-Id": uuid.uuid4().hex,
        "Content-Type": "application/json",
    }
    return fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )


@pytest.mark.parametrize(
    "fault",
    [
        "refused",
        "fin-before-headers",
        "rst-before-headers",
        "tls-to-plain-http",
        "tls-self-signed",
    ],
)
def test_unreachable_upstream_gets_502(
    faults: FaultStack, client: httpx.Client, fault: str
) -> None:
    """A target that fails before any response gives a 502 in the OpenAI shape."""
    target = faults.targets[fault]
    reply = request_to(client, faults.appliance, target)
    error = json.loads(reply.body)["error"]
    row = stored(faults.appliance, reply)

    assert reply.status == 502
    assert reply.headers["content-type"] == "application/json"
    assert error["type"] == "upstream_unreachable"
    assert error["code"] == "upstream_unreachable"
    assert target in error["message"]
    assert reply.headers_at < QUICK_ERROR_S
    assert row["http_status"] == 502
    assert row["upstream_status"] is None
    assert row["outcome"] == "proxy_error"
    assert row["error_kind"] == "upstream_unreachable"
    assert row["error_message"] == error["message"]


def test_stalled_handshake_gets_504(faults: FaultStack, client: httpx.Client) -> None:
    """A TLS handshake left unanswered gives a 504 at the connect timeout."""
    target = faults.targets["tls-to-silent-server"]
    reply = request_to(client, faults.appliance, target)
    error = json.loads(reply.body)["error"]
    row = stored(faults.appliance, reply)

    assert reply.status == 504
    assert error["type"] == "upstream_timeout"
    assert target in error["message"]
    assert CONNECT_TIMEOUT_S <= reply.headers_at < CONNECT_TIMEOUT_S + QUICK_ERROR_S
    assert row["outcome"] == "upstream_timeout"


def test_silent_upstream_gets_504(
    faults: FaultStack, stage: Stage, client: httpx.Client
) -> None:
    """No response headers within the header timeout gives a 504 and closes upstream."""
    appliance = faults.appliance
    headers = stage.play("POST", CHAT, Script(hang=True))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )
    seen = stage.seen(headers)
    error = json.loads(reply.body)["error"]
    row = stored(appliance, reply)

    assert reply.status == 504
    assert error["type"] == "upstream_timeout"
    assert HEADER_TIMEOUT_S <= reply.headers_at < HEADER_TIMEOUT_S + QUICK_ERROR_S
    assert stage.upstream.wait_closed(seen, timeout_s=2) is not None
    assert row["outcome"] == "upstream_timeout"
    assert row["error_kind"] == "upstream_timeout"
    assert row["http_status"] == 504


EVENTS = formats.chat_stream(["one", " two", " three"])
STREAM_CUTS: dict[str, tuple[list[Step], str, str]] = {
    "idle-past-timeout": (
        [send(EVENTS[0]), send(EVENTS[1]), sleep(IDLE_TIMEOUT_S * 3000)],
        "upstream_timeout",
        "idle_timeout",
    ),
    "fin-mid-stream": (
        [send(EVENTS[0]), send(EVENTS[1]), close()],
        "upstream_incomplete",
        "upstream_closed",
    ),
    "rst-mid-stream": (
        [send(EVENTS[0]), send(EVENTS[1]), reset()],
        "upstream_incomplete",
        "upstream_",
    ),
    "fin-mid-event": (
        [send(EVENTS[0]), send(EVENTS[1]), send(EVENTS[2][:20]), close()],
        "upstream_incomplete",
        "upstream_closed",
    ),
}


@pytest.mark.parametrize("cut", list(STREAM_CUTS))
def test_cut_stream_ends_abnormally(
    faults: FaultStack, stage: Stage, client: httpx.Client, cut: str
) -> None:
    """A stream the upstream cuts or stalls reaches the client as a broken body."""
    steps, outcome, kind = STREAM_CUTS[cut]
    appliance = faults.appliance
    headers = stage.play("POST", CHAT, Script(headers=SSE, steps=steps))
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=STREAM_REQUEST,
    )
    seen = stage.seen(headers)
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.error is not None, "the client saw a clean end of a cut stream"
    assert reply.body == body_of(steps)
    assert stage.upstream.wait_closed(seen, timeout_s=2) is not None or cut != (
        "idle-past-timeout"
    )
    assert row["outcome"] == outcome
    assert row["error_kind"].startswith(kind)
    assert row["response_text"] == "one two"
    assert row["finish_reason"] is None


def test_cut_json_body_ends_abnormally(
    faults: FaultStack, stage: Stage, client: httpx.Client
) -> None:
    """A Content-Length body cut short is not completed or re-framed by the proxy."""
    body = formats.chat_completion("a whole answer")
    steps = [send(body[:30]), close()]
    headers_out = [*JSON, ("Content-Length", str(len(body)))]
    script = Script(headers=headers_out, steps=steps, chunked=False)
    appliance = faults.appliance
    headers = stage.play("POST", CHAT, script)
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )
    row = stored(appliance, reply)

    assert reply.status == 200
    assert reply.error is not None, "the client saw a clean end of a cut body"
    assert reply.body == body[:30]
    assert row["outcome"] == "upstream_incomplete"
    assert row["error_kind"] == "upstream_closed"
    assert row["response_bytes"] == 30
