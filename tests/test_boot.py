"""The appliance boots empty, forwards before migrating, and keeps its data."""

import hashlib
import stat
import uuid

import httpx

from tests.support.appliance import Appliance
from tests.support.formats import chat_completion, usage_block
from tests.support.upstream import Script, ScriptedUpstream, end, send


def route_chat(upstream: ScriptedUpstream, path: str, text: str) -> bytes:
    body = chat_completion(text, usage=usage_block(5, 2))
    upstream.route(
        "POST",
        path,
        Script(
            headers=[("Content-Type", "application/json")], steps=[send(body), end()]
        ),
    )
    return body


def post_chat(url: str, path: str) -> httpx.Response:
    request = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{url}{path}", json=request, timeout=30)


def test_boot_migrate_without_restart(
    fresh_appliance: Appliance, upstream: ScriptedUpstream
):
    path = f"/boot-{uuid.uuid4().hex}/v1/chat/completions"
    body = route_chat(upstream, path, "before migrating")

    before = post_chat(fresh_appliance.entry_url, path)
    assert before.status_code == 200
    assert hashlib.sha256(before.content).digest() == hashlib.sha256(body).digest()
    notice = httpx.get(f"{fresh_appliance.dashboard_url}/", timeout=10)
    assert "migrate" in notice.text

    result = fresh_appliance.migrate()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "migrate-roles: ok" in result.stdout
    assert "migrate-schema: ok" in result.stdout

    after = post_chat(fresh_appliance.entry_url, path)
    stored_after = fresh_appliance.exchange(after.headers["helicone-id"], timeout_s=20)
    assert stored_after is not None
    stored_before = fresh_appliance.exchange(
        before.headers["helicone-id"], timeout_s=20
    )
    assert stored_before is not None, "the exchange captured before migrating was lost"
    page = httpx.get(
        f"{fresh_appliance.dashboard_url}/api/exchanges/{after.headers['helicone-id']}",
        timeout=10,
    )
    assert page.status_code == 200


def test_migrate_twice_is_harmless(appliance: Appliance):
    result = appliance.migrate()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "already at revision" in result.stdout


def test_secrets_are_private(appliance: Appliance):
    secrets = sorted((appliance.data_dir / "secrets").glob("*.secret"))

    assert secrets
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_restart_keeps_exchanges(
    fresh_appliance: Appliance, upstream: ScriptedUpstream
):
    assert fresh_appliance.migrate().returncode == 0
    path = f"/restart-{uuid.uuid4().hex}/v1/chat/completions"
    route_chat(upstream, path, "kept across restarts")
    exchange_id = post_chat(fresh_appliance.entry_url, path).headers["helicone-id"]
    assert fresh_appliance.exchange(exchange_id, timeout_s=20) is not None

    fresh_appliance.stop()
    fresh_appliance.start()

    assert fresh_appliance.exchange(exchange_id, timeout_s=20) is not None
