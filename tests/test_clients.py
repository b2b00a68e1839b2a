"""Real client SDKs through the appliance's entry port, against Ollama's formats."""

import asyncio
import hashlib
import json
import uuid

import ollama
import openai
import pytest

from tests.support.appliance import Appliance
from tests.support.formats import (
    DONE_EVENT,
    chat_chunk,
    chat_completion,
    chat_stream,
    embeddings,
    ollama_chat_done,
    ollama_chat_line,
    ollama_embed,
    ollama_generate_done,
    ollama_generate_line,
    ollama_tags,
    usage_block,
)
from tests.support.upstream import (
    Script,
    ScriptedUpstream,
    SeenRequest,
    end,
    send,
    sleep,
)

JSON = [("Content-Type", "application/json")]
SSE = [("Content-Type", "text/event-stream")]
NDJSON = [("Content-Type", "application/x-ndjson")]
STREAM_PIECES = ["Hel", "lo", " from", " the", " mock"]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def chat_route(upstream: ScriptedUpstream) -> dict[str, bytes]:
    """Route chat completions by the request's stream flag; return the bodies."""
    prefix = f"/c-{uuid.uuid4().hex[:8]}"
    events = chat_stream(STREAM_PIECES, usage=(11, 5))
    sent = {
        "prefix": prefix.encode(),
        "json": chat_completion("Hello from the mock", usage=usage_block(11, 5)),
        "stream": b"".join(events),
    }

    def script(request: SeenRequest) -> Script:
        if json.loads(request.body).get("stream"):
            steps = [step for event in events for step in (send(event), sleep(20))]
            return Script(headers=SSE, steps=[*steps, end()])
        return Script(headers=JSON, steps=[send(sent["json"]), end()])

    upstream.route("POST", f"{prefix}/v1/chat/completions", script)
    return sent


def openai_client(appliance: Appliance, prefix: bytes) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{appliance.entry_url}{prefix.decode()}/v1",
        api_key="sk-test-PLACEHOLDER",
        max_retries=0,
    )


MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_openai_sdk_non_stream(appliance: Appliance, chat_route: dict[str, bytes]):
    with openai_client(appliance, chat_route["prefix"]) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="mock-1", messages=MESSAGES
        )
        completion = raw.parse()
    row = appliance.exchange(raw.headers["helicone-id"])

    assert digest(raw.http_response.content) == digest(chat_route["json"])
    assert completion.choices[0].message.content == "Hello from the mock"
    assert row is not None
    assert row["model"] == "mock-1"
    assert row["http_status"] == 200
    assert row["outcome"] == "success"
    assert row["is_stream"] is False
    assert row["response_text"] == "Hello from the mock"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 5)
    assert row["latency_ms"] > 0


def test_openai_sdk_stream(appliance: Appliance, chat_route: dict[str, bytes]):
    with (
        openai_client(appliance, chat_route["prefix"]) as client,
        client.chat.completions.with_streaming_response.create(
            model="mock-1", messages=MESSAGES, stream=True
        ) as response,
    ):
        body = b"".join(response.http_response.iter_bytes())
        exchange_id = response.headers["helicone-id"]
    row = appliance.exchange(exchange_id)

    assert digest(body) == digest(chat_route["stream"])
    assert row is not None
    assert row["is_stream"] is True
    assert row["response_text"] == "".join(STREAM_PIECES)
    assert row["ttft_ms"] is not None
    assert 0 < row["ttft_ms"] < row["latency_ms"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (11, 5)
    assert row["usage_source"] == "reported"


def test_openai_async_stream(appliance: Appliance, chat_route: dict[str, bytes]):
    async def run() -> str:
        client = openai.AsyncOpenAI(
            base_url=f"{appliance.entry_url}{chat_route['prefix'].decode()}/v1",
            api_key="sk-test-PLACEHOLDER",
            max_retries=0,
        )
        stream = await client.chat.completions.create(
            model="mock-1", messages=MESSAGES, stream=True
        )
        text = "".join(
            [
                chunk.choices[0].delta.content or ""
                async for chunk in stream
                if chunk.choices
            ]
        )
        await client.close()
        return text

    assert asyncio.run(run()) == "".join(STREAM_PIECES)


def test_openai_sdk_embeddings(appliance: Appliance, upstream: ScriptedUpstream):
    prefix = f"/e-{uuid.uuid4().hex[:8]}"
    body = embeddings([[0.5, -0.25], [1.0, 0.125]], model="nomic-embed-text")
    upstream.route(
        "POST",
        f"{prefix}/v1/embeddings",
        Script(headers=JSON, steps=[send(body), end()]),
    )
    with openai_client(appliance, prefix.encode()) as client:
        raw = client.embeddings.with_raw_response.create(
            model="nomic-embed-text", input=["one", "two"], encoding_format="float"
        )
    row = appliance.exchange(raw.headers["helicone-id"])

    assert len(raw.parse().data) == 2
    assert row is not None
    assert row["endpoint"] == "openai.embeddings"


def test_ollama_sdk_chat_stream(appliance: Appliance, upstream: ScriptedUpstream):
    prefix = f"/o-{uuid.uuid4().hex[:8]}"
    lines = [ollama_chat_line("Hel"), ollama_chat_line("lo"), ollama_chat_done(26, 2)]
    steps = [step for line in lines for step in (send(line), sleep(20))]
    upstream.route(
        "POST", f"{prefix}/api/chat", Script(headers=NDJSON, steps=[*steps, end()])
    )
    with ollama.Client(host=f"{appliance.entry_url}{prefix}") as client:
        parts = list(client.chat(model="llama3.2", messages=MESSAGES, stream=True))
    seen = upstream.requests_for(f"{prefix}/api/chat")[-1]
    rows = appliance.wait_rows("path = %s", f"{prefix}/api/chat")
    row = rows[-1] if rows else None

    assert "".join(part.message.content for part in parts) == "Hello"
    assert seen.header("host") == upstream.url.removeprefix("http://")
    assert row is not None
    assert row["endpoint"] == "ollama.chat"
    assert row["is_stream"] is True
    assert row["response_text"] == "Hello"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (26, 2)
    assert row["tokens_per_s"] is not None


def test_ollama_sdk_list(appliance: Appliance, upstream: ScriptedUpstream):
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    upstream.route(
        "GET",
        f"{prefix}/api/tags",
        Script(headers=JSON, steps=[send(ollama_tags(["llama3.2:latest"])), end()]),
    )
    with ollama.Client(host=f"{appliance.entry_url}{prefix}") as client:
        models = client.list()

    assert [model.model for model in models.models] == ["llama3.2:latest"]


def test_openai_sdk_streamed_tool_call(
    appliance: Appliance, upstream: ScriptedUpstream
):
    prefix = f"/f-{uuid.uuid4().hex[:8]}"
    call = {"index": 0, "id": "call_a", "type": "function"}
    events = [
        chat_chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {**call, "function": {"name": "get_weather", "arguments": ""}}
                ],
            }
        ),
        chat_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}
        ),
        chat_chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}
        ),
        chat_chunk({}, finish_reason="tool_calls"),
        DONE_EVENT,
    ]
    upstream.route(
        "POST",
        f"{prefix}/v1/chat/completions",
        Script(headers=SSE, steps=[*[send(event) for event in events], end()]),
    )
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}},
    }

    with openai_client(appliance, prefix.encode()) as client:
        stream = client.chat.completions.create(
            model="mock-1", messages=MESSAGES, tools=[tool], stream=True
        )
        arguments = "".join(
            chunk.choices[0].delta.tool_calls[0].function.arguments or ""
            for chunk in stream
            if chunk.choices and chunk.choices[0].delta.tool_calls
        )
    rows = appliance.wait_rows("path = %s", f"{prefix}/v1/chat/completions")

    assert arguments == '{"city":"Paris"}'
    assert rows
    assert rows[-1]["tool_calls"] == [
        {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris"}'}
    ]
    assert rows[-1]["finish_reason"] == "tool_calls"


def test_ollama_sdk_generate_and_embed(
    appliance: Appliance, upstream: ScriptedUpstream
):
    prefix = f"/g-{uuid.uuid4().hex[:8]}"
    lines = [
        ollama_generate_line("Hi"),
        ollama_generate_line(" there"),
        ollama_generate_done(5, 2),
    ]
    upstream.route(
        "POST",
        f"{prefix}/api/generate",
        Script(headers=NDJSON, steps=[send(b"".join(lines)), end()]),
    )
    upstream.route(
        "POST",
        f"{prefix}/api/embed",
        Script(
            headers=JSON, steps=[send(ollama_embed([[0.5, 0.25]], tokens=3)), end()]
        ),
    )

    with ollama.Client(host=f"{appliance.entry_url}{prefix}") as client:
        text = "".join(
            part.response
            for part in client.generate(model="llama3.2", prompt="Hi", stream=True)
        )
        vectors = client.embed(model="nomic-embed-text", input="hello").embeddings
    generated = appliance.wait_rows("path = %s", f"{prefix}/api/generate")
    embedded = appliance.wait_rows("path = %s", f"{prefix}/api/embed")

    assert text == "Hi there"
    assert vectors == [[0.5, 0.25]]
    assert generated[-1]["endpoint"] == "ollama.generate"
    assert generated[-1]["response_text"] == "Hi there"
    assert (generated[-1]["prompt_tokens"], generated[-1]["completion_tokens"]) == (
        5,
        2,
    )
    assert embedded[-1]["endpoint"] == "ollama.embed"
    assert embedded[-1]["prompt_tokens"] == 3
