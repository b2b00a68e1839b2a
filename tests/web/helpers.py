"""Helpers of the dashboard tests: traffic through the proxy and console capture."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import openai

from tests.support import formats
from tests.support.upstream import Script, ScriptedUpstream, send, sleep

CHAT = "/v1/chat/completions"
SSE = [("content-type", "text/event-stream")]
JSON = [("content-type", "application/json")]

XSS_PROMPT = (
    '<script>window.__xss = 1; alert("xss")</script>'
    '<img src=x onerror="window.__xss = 2">'
    "<b>bold</b></td></tr></table><iframe src=javascript:alert(3)></iframe>"
)


@dataclass
class Traffic:
    """Exchanges recorded for the dashboard tests, by what they were made for."""

    run: str
    ids: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def user(self) -> str:
        return f"user-{self.run}"

    @property
    def session(self) -> str:
        return f"chat-{self.run}"


def stream_script(pieces: list[str], model: str, pause_ms: float = 0) -> Script:
    """Return a streamed chat reply with a pause before its last piece."""
    events = formats.chat_stream(pieces, model=model, usage=(12, len(pieces)))
    steps = [send(event) for event in events[:-3]]
    if pause_ms:
        steps.append(sleep(pause_ms))
    steps.extend(send(event) for event in events[-3:])
    return Script(headers=SSE, steps=steps)


def json_script(content: str, model: str) -> Script:
    body = formats.chat_completion(
        content, model=model, usage=formats.usage_block(9, 4)
    )
    return Script(headers=JSON, steps=[send(body)], chunked=False)


class Sender:
    """Send chat completions through the appliance and return their exchange ids."""

    def __init__(self, appliance: Any, upstream: ScriptedUpstream, run: str) -> None:
        self.appliance = appliance
        self.upstream = upstream
        self.run = run
        self.scripts: dict[str, Script] = {}

    def _dispatch(self, request: Any) -> Script:
        marker = request.header("x-test-marker") or ""
        script = self.scripts.get(marker)
        if script is None:
            body = b'{"error":{"message":"no script for this marker"}}'
            return Script(status=404, headers=JSON, steps=[send(body)], chunked=False)
        return script

    def chat(
        self,
        script: Script,
        messages: list[dict[str, Any]],
        *,
        model: str,
        stream: bool = False,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Send one chat completion and wait until its exchange is stored."""
        marker = uuid.uuid4().hex
        self.scripts[marker] = script
        # Other test modules route the same path on the shared upstream, so the
        # route is set again before every request.
        self.upstream.route("POST", CHAT, self._dispatch)
        client = openai.OpenAI(
            base_url=self.appliance.entry_url + "/v1",
            api_key="sk-test-PLACEHOLDER",
            max_retries=0,
            default_headers={
                "x-test-marker": marker,
                "Helicone-Target-URL": self.upstream.url,
                **(headers or {}),
            },
        )
        with client:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=messages, stream=stream
            )
            exchange_id = raw.headers.get("helicone-id")
            reply = raw.parse()
            if stream:
                for _ in reply:
                    pass

        assert exchange_id, "the proxy sent no Helicone-Id header"
        assert self.appliance.exchange(exchange_id) is not None
        return exchange_id


class ConsoleLog:
    """Console errors, page errors and dialogs that one page produced."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"{message.type}: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()
