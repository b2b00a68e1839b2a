"""Fixtures of the dashboard tests: recorded traffic, a browser, an app with sign-in.

Traffic goes through the appliance's entry with the openai SDK against the
scripted upstream, so the dashboard shows exchanges the proxy really recorded.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.settings import Settings
from app.web.app import create_app
from tests.support.upstream import ScriptedUpstream

from .helpers import XSS_PROMPT, ConsoleLog, Sender, Traffic, json_script, stream_script

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "web"


@pytest.fixture(scope="session")
def sender(appliance: Any, upstream: ScriptedUpstream) -> Sender:
    return Sender(appliance, upstream, uuid.uuid4().hex[:8])


@pytest.fixture(scope="session")
def traffic(sender: Sender) -> Traffic:
    """Record a small, varied set of exchanges once for all dashboard tests."""
    traffic = Traffic(run=sender.run)
    traffic.models = {"main": f"model-a-{sender.run}", "other": f"model-b-{sender.run}"}
    user = {"Helicone-User-Id": traffic.user}
    session = {
        "Helicone-Session-Id": traffic.session,
        "Helicone-Session-Name": "dashboard test chat",
        "Helicone-Property-Team": "blue",
    }
    main, other = traffic.models["main"], traffic.models["other"]

    traffic.ids["first"] = sender.chat(
        json_script("The capital of France is Paris.", main),
        [
            {"role": "system", "content": f"Answer briefly, code sys{sender.run}."},
            {"role": "user", "content": f"capital of France {sender.run}"},
        ],
        model=main,
        headers={**user, **session, "Helicone-Session-Path": "/plan"},
    )
    traffic.ids["stream"] = sender.chat(
        stream_script(["Blue ", "whales ", "sing."], main, pause_ms=400),
        [{"role": "user", "content": f"whale song {sender.run}"}],
        model=main,
        stream=True,
        headers={**user, **session, "Helicone-Session-Path": "/plan/research"},
    )
    traffic.ids["other"] = sender.chat(
        json_script("Tokyo.", other),
        [{"role": "user", "content": f"capital of Japan {sender.run}"}],
        model=other,
        headers={"Helicone-User-Id": f"other-{sender.run}"},
    )
    traffic.ids["xss"] = sender.chat(
        json_script(XSS_PROMPT, main),
        [{"role": "user", "content": XSS_PROMPT + sender.run}],
        model=main,
        headers=user,
    )
    traffic.ids["last"] = sender.chat(
        json_script("Done.", main),
        [{"role": "user", "content": f"last one {sender.run}"}],
        model=main,
        headers=user,
    )
    return traffic


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "chromium is missing: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser page; the test fails if the console showed an error."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, accept_downloads=True
    )
    opened = context.new_page()
    opened.console_log = ConsoleLog(opened)
    yield opened

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert opened.console_log.problems == []
    assert opened.console_log.dialogs == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class SignedInApp:
    url: str
    password: str


@pytest.fixture(scope="session")
def auth_app(appliance: Any) -> Iterator[SignedInApp]:
    """The dashboard in-process with sign-in on, over the appliance's database."""
    password = "correct horse " + uuid.uuid4().hex
    settings = Settings(
        data_dir=appliance.data_dir,
        postgres_port=appliance.ports["POSTGRES_PORT"],
        dashboard_auth="on",
        dashboard_password=password,
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the in-process dashboard did not start"
        time.sleep(0.05)

    yield SignedInApp(f"http://127.0.0.1:{port}", password)
    server.should_exit = True
    thread.join(timeout=10)
