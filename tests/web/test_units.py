"""Pure parts of the dashboard: conversation, timeline, curl, session tree, banner."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi.testclient import TestClient

from app.settings import Settings
from app.web import conversation, curl, timeline
from app.web.app import create_app
from app.web.views.live import BEGINNING, Follower
from app.web.views.sessions import path_tree


def roles_and_kinds(
    messages: list[conversation.Message],
) -> list[tuple[str, list[str]]]:
    return [(m.role, [part.kind for part in m.parts]) for m in messages]


def test_openai_chat_with_tools_and_image() -> None:
    exchange = {
        "request_body": {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "data:image/png;base64,<elided 9 chars>"
                            },
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "function": {"name": "look", "arguments": '{"x": 1}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
            ]
        },
        "reasoning_text": "It is a cat.",
        "response_text": "A cat.",
        "tool_calls": None,
    }

    messages = conversation.conversation(exchange)

    assert roles_and_kinds(messages) == [
        ("system", ["text"]),
        ("user", ["text", "image"]),
        ("assistant", ["tool_call"]),
        ("tool", ["tool_result"]),
        ("assistant", ["reasoning", "text"]),
    ]
    assert messages[1].parts[1].text.startswith("data:image/png")
    assert messages[2].parts[0].name == "look"
    assert json.loads(messages[2].parts[0].text) == {"x": 1}


def test_ollama_generate_with_images() -> None:
    exchange = {
        "request_body": {"system": "sys", "prompt": "describe", "images": ["<elided>"]},
        "response_text": "a dog",
    }

    messages = conversation.conversation(exchange)

    assert roles_and_kinds(messages) == [
        ("system", ["text"]),
        ("user", ["text", "image"]),
        ("assistant", ["text"]),
    ]


def test_responses_input_items() -> None:
    exchange = {
        "request_body": {
            "instructions": "be kind",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                {"type": "function_call", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c", "output": "ok"},
            ],
        },
        "tool_calls": [{"id": "c2", "name": "g", "arguments": '{"y": 2}'}],
    }

    messages = conversation.conversation(exchange)

    assert roles_and_kinds(messages) == [
        ("system", ["text"]),
        ("user", ["text"]),
        ("assistant", ["tool_call"]),
        ("tool", ["tool_result"]),
        ("assistant", ["tool_call"]),
    ]


def test_non_json_request_body() -> None:
    assert conversation.conversation({"request_body": "not json"}) == []


def test_timeline_longest_gap() -> None:
    entries = [
        [5, 30, "role"],
        [10, 20, "content"],
        [900, 20, "content"],
        [910, 8, "done"],
    ]

    laid_out = timeline.layout(entries)

    assert laid_out is not None
    assert laid_out.events == 4
    assert laid_out.total_bytes == 78
    assert laid_out.longest_gap_ms == 890
    assert laid_out.longest_gap_at_ms == 10
    assert laid_out.kinds == {"role": 1, "content": 2, "done": 1}
    assert all(0 <= bar.x <= timeline.WIDTH for bar in laid_out.bars)


def test_timeline_ignores_bad_entries() -> None:
    assert timeline.layout(None) is None
    assert timeline.layout([["x", 1, "content"], [1]]) is None
    laid_out = timeline.layout([[1, 2, "strange"]])
    assert laid_out is not None
    assert laid_out.bars[0].kind == "other"


def test_curl_uses_placeholder_key() -> None:
    exchange = {
        "method": "POST",
        "target_url": "http://127.0.0.1:11434/",
        "path": "/v1/chat/completions",
        "query": "a=1",
        "request_headers": {"authorization": "Bearer <redacted sha256:abc len=19>"},
        "request_body": {
            "model": "m",
            "messages": [{"role": "user", "content": "it's"}],
        },
    }

    command = curl.curl_command(exchange)

    assert command.startswith(
        "curl -X POST 'http://127.0.0.1:11434/v1/chat/completions?a=1'"
    )
    assert '-H "authorization: Bearer $API_KEY"' in command
    assert "redacted" not in command
    assert "it'\"'\"'s" in command


def test_curl_without_target_url() -> None:
    command = curl.curl_command({"method": "GET", "path": "/api/tags", "query": "x=1"})

    assert command == "curl -X GET \"$UPSTREAM_URL\"'/api/tags?x=1'"


def test_curl_without_credentials() -> None:
    command = curl.curl_command(
        {"method": "GET", "target_url": "http://h", "path": "/api/tags"}
    )

    assert command == "curl -X GET http://h/api/tags"


def test_session_path_tree() -> None:
    rows = [
        {"id": 1, "session_path": "/plan"},
        {"id": 2, "session_path": "/plan/research"},
        {"id": 3, "session_path": None},
        {"id": 4, "session_path": "/plan/research/"},
    ]

    root = path_tree(rows)

    assert [row["id"] for row in root.exchanges] == [3]
    plan = root.children["plan"]
    assert [row["id"] for row in plan.exchanges] == [1]
    research = plan.children["research"]
    assert research.path == "/plan/research"
    assert [row["id"] for row in research.exchanges] == [2, 4]


def dashboard_without_database(data_dir: Path) -> TestClient:
    (data_dir / "secrets").mkdir(parents=True)
    (data_dir / "secrets" / "session.secret").write_text("s" * 43)
    settings = Settings(
        data_dir=data_dir, dashboard_auth="on", dashboard_password="unit test pass"
    )
    return TestClient(create_app(settings))


def test_dropped_banner_shown(tmp_path: Path) -> None:
    client = dashboard_without_database(tmp_path)
    (tmp_path / "spool").mkdir()
    record = {"dropped": 1234, "since": "2026-01-31T10:00:00Z"}
    (tmp_path / "spool" / "dropped.json").write_text(json.dumps(record))

    with client:
        page = client.get("/signin").text

    assert 'id="dropped-exchanges"' in page
    assert "1,234 exchanges" in page
    assert "2026-01-31T10:00:00Z" in page


def test_dropped_banner_hidden(tmp_path: Path) -> None:
    client = dashboard_without_database(tmp_path)
    (tmp_path / "spool").mkdir()

    with client:
        missing = client.get("/signin").text
        (tmp_path / "spool" / "dropped.json").write_text('{"dropped": 0}')
        zero = client.get("/signin").text
        (tmp_path / "spool" / "dropped.json").write_text("{not json")
        broken = client.get("/signin").text

    assert 'id="dropped-exchanges"' not in missing
    assert 'id="dropped-exchanges"' not in zero
    assert 'id="dropped-exchanges"' not in broken


def moment(second: int) -> datetime:
    return datetime(2026, 1, 31, 12, 0, second, tzinfo=UTC)


def live_row(second: int) -> dict[str, Any]:
    """Return a recorded row whose id and recorded_at second are both `second`."""
    return {"recorded_at": moment(second), "id": UUID(int=second)}


def ids_of(rows: list[dict[str, Any]]) -> list[UUID]:
    return [row["id"] for row in rows]


def test_follower_skips_rows_page_showed() -> None:
    follower = Follower((moment(5), UUID(int=5)))

    first = follower.take_new([live_row(4), live_row(5), live_row(6)])

    assert ids_of(first) == [UUID(int=6)]
    assert follower.position == (moment(6), UUID(int=6))


def test_follower_sends_late_commit_once() -> None:
    follower = Follower((moment(0), UUID(int=0)))
    follower.take_new([live_row(2)])

    late = follower.take_new([live_row(1), live_row(2), live_row(3)])
    again = follower.take_new([live_row(1), live_row(2), live_row(3)])

    assert ids_of(late) == [UUID(int=1), UUID(int=3)]
    assert again == []
    assert follower.position == (moment(3), UUID(int=3))


def test_follower_starts_on_empty_table() -> None:
    follower = Follower(BEGINNING)

    window = follower.window_start()
    first = follower.take_new([live_row(1)])

    assert window[0] < BEGINNING[0]
    assert ids_of(first) == [UUID(int=1)]


def test_follower_forgets_old_ids() -> None:
    follower = Follower((moment(0), UUID(int=0)))
    follower.take_new([live_row(1)])

    follower.take_new([live_row(59)])

    assert set(follower.sent) == {UUID(int=59)}


def test_curl_reads_header_pairs() -> None:
    exchange = {"method": "POST", "target_url": "http://h", "path": "/v1/x"}
    exchange["request_headers"] = [["X-Api-Key", "<redacted>"], ["accept", "*/*"]]

    command = curl.curl_command(exchange)

    assert '-H "x-api-key: $API_KEY"' in command
    assert "authorization" not in command
