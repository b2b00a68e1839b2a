"""Metadata headers through the running appliance: stored, never forwarded."""

import uuid

import httpx

from tests.support.appliance import Appliance
from tests.support.formats import chat_completion, usage_block
from tests.support.upstream import Script, ScriptedUpstream, end, send

JSON = [("Content-Type", "application/json")]
REQUEST = {
    "model": "mock-1",
    "messages": [{"role": "user", "content": "private words"}],
}


def route(upstream: ScriptedUpstream) -> str:
    path = f"/h-{uuid.uuid4().hex[:8]}/v1/chat/completions"
    body = chat_completion("secret answer", usage=usage_block(3, 2))
    upstream.route("POST", path, Script(headers=JSON, steps=[send(body), end()]))
    return path


def test_request_id_becomes_exchange_id(
    appliance: Appliance, upstream: ScriptedUpstream
):
    path = route(upstream)
    wanted = str(uuid.uuid4())

    reply = httpx.post(
        appliance.entry_url + path,
        json=REQUEST,
        headers={"Helicone-Request-Id": wanted},
    )

    assert reply.headers["helicone-id"] == wanted
    assert appliance.exchange(wanted) is not None


def test_invalid_request_id_replaced(appliance: Appliance, upstream: ScriptedUpstream):
    path = route(upstream)

    reply = httpx.post(
        appliance.entry_url + path,
        json=REQUEST,
        headers={"Helicone-Request-Id": "not-a-uuid"},
    )

    assert uuid.UUID(reply.headers["helicone-id"])
    assert reply.headers["helicone-id"] != "not-a-uuid"


def test_omit_keeps_metrics_drops_bodies(
    appliance: Appliance, upstream: ScriptedUpstream
):
    path = route(upstream)
    omit = {"Helicone-Omit-Request": "true", "Helicone-Omit-Response": "true"}

    reply = httpx.post(appliance.entry_url + path, json=REQUEST, headers=omit)
    row = appliance.exchange(reply.headers["helicone-id"])

    assert reply.json()["choices"][0]["message"]["content"] == "secret answer"
    assert row is not None
    assert row["request_body"] is None
    assert row["response_body"] is None
    assert row["prompt_text"] is None
    assert row["response_text"] is None
    assert row["request_omitted"] is True
    assert row["response_omitted"] is True
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 2)
    assert row["latency_ms"] is not None


def test_openwebui_user_and_chat_stored(
    appliance: Appliance, upstream: ScriptedUpstream
):
    path = route(upstream)
    sent = {
        "X-OpenWebUI-User-Name": "Zo%C3%AB Example",
        "X-OpenWebUI-User-Id": "3f0c2f0e-0000-4000-8000-000000000009",
        "X-OpenWebUI-User-Email": "zoe@example.com",
        "X-OpenWebUI-User-Role": "user",
        "X-OpenWebUI-Chat-Id": "chat-1234",
        "Helicone-Property-Team": "caf%C3%A9",
    }

    reply = httpx.post(appliance.entry_url + path, json=REQUEST, headers=sent)
    row = appliance.exchange(reply.headers["helicone-id"])
    seen = upstream.requests_for(path)[-1]

    assert row is not None
    assert row["user_name"] == "Zoë Example"
    assert row["user_email"] == "zoe@example.com"
    assert row["user_role"] == "user"
    assert row["user_id"] == "3f0c2f0e-0000-4000-8000-000000000009"
    assert row["session_id"] == "chat-1234"
    assert row["properties"]["team"] == "café"
    assert seen.header("Helicone-Property-Team") is None
    assert seen.header("X-OpenWebUI-Chat-Id") == "chat-1234"


def test_body_user_used_without_headers(
    appliance: Appliance, upstream: ScriptedUpstream
):
    path = route(upstream)

    reply = httpx.post(
        appliance.entry_url + path, json={**REQUEST, "user": "from-body"}
    )
    row = appliance.exchange(reply.headers["helicone-id"])

    assert row is not None
    assert row["user_id"] == "from-body"
    assert row["user_source"] == "body"


def test_disallowed_target_rejected_through_entry(appliance: Appliance):
    reply = httpx.post(
        appliance.entry_url + "/v1/chat/completions",
        json=REQUEST,
        headers={"Helicone-Target-URL": "http://169.254.169.254"},
    )

    assert reply.status_code == 403
    assert reply.json()["error"]["type"] == "target_not_allowed"
    assert "LLMTAP_ALLOWED_TARGETS" in reply.json()["error"]["message"]
