"""A real Open WebUI 0.12.4 chatting through the appliance, on both connection kinds.

Open WebUI forwards its user as X-OpenWebUI-User-* headers (the name
URL-quoted) and the chat as X-OpenWebUI-Chat-Id. The appliance must store the
decoded user on every exchange and the chat id as the session, for the chat
itself and for the title, tags and follow-up requests Open WebUI makes on its
own.
"""

from __future__ import annotations

from .conftest import (
    CHAT_USAGE,
    FOLLOW_UPS,
    STREAM_PIECES,
    TAGS,
    TASK_USAGE,
    TITLE,
    USER_NAME,
    Conversation,
)

ADMIN_EMAIL = "admin@localhost"
# Open WebUI quotes the name with urllib.parse.quote(name, safe=" ").
QUOTED_NAME = "Zo%C3%AB Example"


def test_requests_per_kind(conversation: Conversation):
    counts = {kind: len(rows) for kind, rows in conversation.by_kind.items()}

    assert counts == {"chat": 2, "title": 1, "tags": 1, "follow_ups": 2}


def test_user_name_decoded(conversation: Conversation):
    names = {row["user_name"] for row in conversation.rows}

    assert names == {USER_NAME}


def test_user_identity(conversation: Conversation):
    for row in conversation.rows:
        assert row["user_id"] == conversation.user["id"], row["id"]
        assert row["user_email"] == ADMIN_EMAIL, row["id"]
        assert row["user_role"] == "admin", row["id"]
        assert row["user_source"] == "openwebui", row["id"]


def test_session_is_chat_id(conversation: Conversation):
    chat_id = conversation.turns[0].chat_id
    sessions = {row["session_id"] for row in conversation.rows}

    assert conversation.turns[1].chat_id == chat_id
    assert sessions == {chat_id}


def test_tasks_share_chat_session(conversation: Conversation):
    chat_id = conversation.turns[0].chat_id
    for kind in ("title", "tags", "follow_ups"):
        rows = conversation.by_kind.get(kind, [])
        assert rows, f"no {kind} exchange was stored"
        assert {row["session_id"] for row in rows} == {chat_id}, kind
        assert {row["is_stream"] for row in rows} == {False}, kind


def test_stream_response_text(conversation: Conversation):
    rows = conversation.by_kind.get("chat", [])

    assert len(rows) == 2
    for row in rows:
        assert row["is_stream"] is True, row["id"]
        assert row["outcome"] == "success", row["id"]
        assert row["response_text"] == "".join(STREAM_PIECES), row["id"]
        assert row["model"] == conversation.kind.model, row["id"]


def test_task_response_and_usage(conversation: Conversation):
    rows = conversation.by_kind.get("title", [])

    assert len(rows) == 1
    assert TITLE in rows[0]["response_text"]
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == TASK_USAGE


def test_stream_usage(conversation: Conversation):
    rows = conversation.by_kind.get("chat", [])

    assert rows
    for row in rows:
        # Ollama's native stream always ends with its counts, but its OpenAI
        # stream carries usage only when the request sets include_usage.
        options = row["request_body"].get("stream_options") or {}
        if conversation.kind.name == "openai" and not options.get("include_usage"):
            assert row["usage_source"] != "reported", row["id"]
            continue
        assert row["usage_source"] == "reported", row["id"]
        assert (row["prompt_tokens"], row["completion_tokens"]) == CHAT_USAGE


def test_openwebui_stores_task_results(conversation: Conversation):
    chat = conversation.chat
    follow_ups = [
        message.get("followUps")
        for message in chat["chat"]["history"]["messages"].values()
        if message.get("role") == "assistant"
    ]

    # Open WebUI stores tag ids: lowercase, spaces as underscores.
    assert chat["title"] == TITLE
    assert chat["meta"].get("tags") == [tag.lower() for tag in TAGS]
    assert FOLLOW_UPS in follow_ups


def test_model_list_attributed(conversation: Conversation):
    user_id = conversation.user["id"]
    rows = [row for row in conversation.list_rows if row["user_id"] == user_id]

    assert rows, "no model-list exchange carried the signed-in user"
    assert {row["user_name"] for row in rows} == {USER_NAME}
    assert {row["session_id"] for row in rows} == {None}


def test_upstream_headers(conversation: Conversation):
    chats = [
        request
        for request in conversation.seen
        if request.path.endswith(conversation.kind.chat_path)
    ]

    assert chats
    for request in chats:
        assert request.header("x-openwebui-user-name") == QUOTED_NAME
        assert request.header("x-openwebui-chat-id") == conversation.turns[0].chat_id
