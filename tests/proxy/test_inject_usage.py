"""LLMTAP_INJECT_STREAM_USAGE: usage asked for on the client's behalf, then hidden."""

import hashlib
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import data_root, require_components
from tests.support.appliance import Appliance
from tests.support.formats import chat_stream, ollama_chat_done, ollama_chat_line
from tests.support.upstream import Script, ScriptedUpstream, SeenRequest, end, send

SSE = [("Content-Type", "text/event-stream")]
NDJSON = [("Content-Type", "application/x-ndjson")]


@pytest.fixture(scope="module")
def injecting(upstream: ScriptedUpstream) -> Iterator[Appliance]:
    require_components()
    roots = data_root()
    with Appliance(
        next(roots) / "data", upstream.url, inject_stream_usage="true"
    ) as running:
        assert running.migrate().returncode == 0
        yield running
    roots.close()


def route_stream(upstream: ScriptedUpstream) -> tuple[str, bytes]:
    """Answer with usage only when the request asked for it, as Ollama does."""
    path = f"/u-{uuid.uuid4().hex[:8]}/v1/chat/completions"
    plain = b"".join(chat_stream(["1, ", "2, 3"]))
    with_usage = b"".join(chat_stream(["1, ", "2, 3"], usage=(11, 6)))

    def script(request: SeenRequest) -> Script:
        options = json.loads(request.body).get("stream_options") or {}
        body = with_usage if options.get("include_usage") else plain
        return Script(headers=SSE, steps=[send(body), end()])

    upstream.route("POST", path, script)
    return path, plain


def test_injected_usage_hidden_and_stored(
    injecting: Appliance, upstream: ScriptedUpstream
):
    path, plain = route_stream(upstream)
    request = {
        "model": "mock-1",
        "stream": True,
        "messages": [{"role": "user", "content": "count"}],
    }

    reply = httpx.post(injecting.proxy_url + path, json=request)
    seen = upstream.requests_for(path)[-1]
    row = injecting.exchange(reply.headers["helicone-id"])

    assert json.loads(seen.body)["stream_options"] == {"include_usage": True}
    assert hashlib.sha256(reply.content).digest() == hashlib.sha256(plain).digest()
    assert row is not None
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        11,
        6,
        17,
    )
    assert row["usage_source"] == "reported"


def test_client_asked_usage_kept(injecting: Appliance, upstream: ScriptedUpstream):
    path, _ = route_stream(upstream)
    request = {
        "model": "mock-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "count"}],
    }

    reply = httpx.post(injecting.proxy_url + path, json=request)

    assert b'"usage":{"prompt_tokens":11' in reply.content


def test_native_ollama_never_injected(injecting: Appliance, upstream: ScriptedUpstream):
    path = f"/n-{uuid.uuid4().hex[:8]}/api/chat"
    body = ollama_chat_line("hi") + ollama_chat_done(4, 1)
    upstream.route("POST", path, Script(headers=NDJSON, steps=[send(body), end()]))
    request = {
        "model": "llama3.2",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }

    sent = json.dumps(request).encode()
    httpx.post(injecting.proxy_url + path, content=sent)
    seen = upstream.requests_for(path)[-1]

    assert seen.body == sent
