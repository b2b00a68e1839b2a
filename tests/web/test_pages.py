"""Each dashboard page in headless Chromium, over traffic the proxy recorded."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

from app.store import queries

from .helpers import Sender, Traffic, json_script

TIMEOUT_MS = 10_000


def rows_shown(page: Any) -> list[str]:
    """Return the exchange ids in the list's table, top to bottom."""
    return page.eval_on_selector_all(
        "#exchange-table tbody tr", "rows => rows.map(row => row.dataset.id)"
    )


def test_overview_draws_charts(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/?range=1h")

    page.wait_for_selector("[data-chart=requests] canvas", timeout=TIMEOUT_MS)
    assert page.locator(".charts canvas").count() >= 5
    assert page.locator("#top-models").inner_text().count(traffic.models["main"]) == 1
    assert traffic.user in page.locator("#top-users").inner_text()
    exchanges = page.locator("#totals .tile strong").first.inner_text()
    assert int(exchanges.replace(",", "")) >= len(traffic.ids)


def test_list_newest_first(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/exchanges?" + f"user={traffic.user}")

    ids = rows_shown(page)
    assert ids[0] == traffic.ids["last"]
    assert ids[-1] == traffic.ids["first"]
    row = page.locator(f'tr[data-id="{traffic.ids["first"]}"]')
    assert "capital of France" in row.locator("[data-field=prompt]").inner_text()
    assert "Paris" in row.locator("[data-field=response]").inner_text()
    assert row.locator("[data-field=tokens]").inner_text() == "9 / 4"


def test_filter_by_model(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/exchanges")
    page.fill("input[name=model]", traffic.models["other"])
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**model=*")

    assert rows_shown(page) == [traffic.ids["other"]]


def test_filter_by_property(appliance: Any, traffic: Traffic, page: Any) -> None:
    query = f"prop=team&value=blue&session={traffic.session}"
    page.goto(appliance.dashboard_url + "/exchanges?" + query)

    assert set(rows_shown(page)) == {traffic.ids["first"], traffic.ids["stream"]}


def test_search_bodies(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/exchanges")
    page.fill("input[name=q]", f"whale {traffic.run}")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**q=*")

    assert rows_shown(page) == [traffic.ids["stream"]]


def test_live_mode_adds_rows(
    appliance: Any, traffic: Traffic, sender: Sender, page: Any
) -> None:
    page.goto(appliance.dashboard_url + "/exchanges?" + f"user={traffic.user}-live")
    # A locator wait, because wait_for_function evaluates a string, which the
    # page's Content-Security-Policy forbids.
    page.locator("#live-status", has_text="waiting").wait_for(timeout=10_000)

    exchange_id = sender.chat(
        json_script("live answer", traffic.models["main"]),
        [{"role": "user", "content": "live question"}],
        model=traffic.models["main"],
        headers={"Helicone-User-Id": f"{traffic.user}-live"},
    )

    page.wait_for_selector(f'tr[data-id="{exchange_id}"]', timeout=TIMEOUT_MS)
    row = page.locator(f'tr[data-id="{exchange_id}"]')
    assert row.locator("[data-field=response]").inner_text() == "live answer"
    assert page.locator("#no-exchanges").count() == 0


def test_export_csv_and_jsonl(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/exchanges?" + f"user={traffic.user}")

    with page.expect_download() as csv_download:
        page.click("#export-csv")
    text = Path(csv_download.value.path()).read_text(encoding="utf-8")
    records = list(csv.DictReader(io.StringIO(text)))
    with page.expect_download() as jsonl_download:
        page.click("#export-jsonl")
    lines = Path(jsonl_download.value.path()).read_text(encoding="utf-8").splitlines()

    expected = [traffic.ids[k] for k in ("last", "xss", "stream", "first")]
    assert [record["id"] for record in records] == expected
    assert [json.loads(line)["id"] for line in lines] == expected
    assert records[-1]["response_text"] == "The capital of France is Paris."


def test_detail_shows_conversation(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + f"/exchanges/{traffic.ids['first']}")

    roles = page.eval_on_selector_all(
        "#conversation .message", "items => items.map(item => item.dataset.role)"
    )
    assert roles == ["system", "user", "assistant"]
    assert "Paris" in page.locator(".message.role-assistant").inner_text()
    assert '"model"' in page.locator("#request-body").inner_text()
    assert page.locator("#usage-source").inner_text() == "reported"
    assert "blue" in page.locator("#metadata").inner_text()


def test_detail_curl_has_placeholder(
    appliance: Any, traffic: Traffic, page: Any
) -> None:
    page.goto(appliance.dashboard_url + f"/exchanges/{traffic.ids['first']}")

    command = page.locator("#curl-command").inner_text()
    assert command.startswith("curl -X POST ")
    assert "/v1/chat/completions" in command
    assert "$API_KEY" in command
    assert "sk-test-PLACEHOLDER" not in command
    headers = appliance.exchange(traffic.ids["first"])["request_headers"]
    assert str(headers.get("authorization")) not in command


def test_detail_stream_timeline(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + f"/exchanges/{traffic.ids['stream']}")

    assert page.locator("svg.timeline rect").count() >= 4
    summary = page.locator("#timeline-summary").inner_text()
    gap_ms = float(summary.split("longest silence ")[1].split(" ")[0])
    # The scripted upstream paused 400 ms before the last piece.
    assert gap_ms >= 350


def test_keyboard_navigation(appliance: Any, traffic: Traffic, page: Any) -> None:
    query = f"?user={traffic.user}"
    page.goto(appliance.dashboard_url + f"/exchanges/{traffic.ids['xss']}{query}")

    page.keyboard.press("j")
    page.wait_for_url(f"**/exchanges/{traffic.ids['stream']}*")
    page.keyboard.press("k")
    page.wait_for_url(f"**/exchanges/{traffic.ids['xss']}*")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/exchanges/{traffic.ids['last']}*")
    assert page.locator("#newer").count() == 0
    page.keyboard.press("Escape")
    page.wait_for_url("**/exchanges?user=*")


def test_sessions_tree(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/sessions?range=1h")
    page.click(f"a[href='/sessions/{quote(traffic.session)}']")
    page.wait_for_url(f"**/sessions/{traffic.session}")

    tree = page.locator("#session-tree").inner_text()
    assert "/plan/research" in tree
    ids = page.eval_on_selector_all(
        "#session-exchanges tbody tr", "rows => rows.map(row => row.dataset.id)"
    )
    assert ids == [traffic.ids["first"], traffic.ids["stream"]]


def test_users_and_models(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + "/models")
    page.click(f"#model-table a:text-is('{traffic.models['other']}')")
    page.wait_for_url("**/exchanges?model=*")
    assert rows_shown(page) == [traffic.ids["other"]]

    page.goto(appliance.dashboard_url + "/users")
    row = page.locator("#user-table tr", has_text=traffic.user).first
    assert row.locator("td").nth(1).inner_text() == "4"


def test_api_detail_json(appliance: Any, traffic: Traffic) -> None:
    base = appliance.dashboard_url + "/api/exchanges/"

    found = httpx.get(base + traffic.ids["first"], timeout=10)
    unknown = httpx.get(base + "00000000-0000-0000-0000-000000000000", timeout=10)
    invalid = httpx.get(base + "not-a-uuid", timeout=10)

    assert found.status_code == 200
    assert found.json()["id"] == traffic.ids["first"]
    assert found.json()["response_text"] == "The capital of France is Paris."
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found"
    assert invalid.status_code == 404
    assert invalid.json()["error"]["type"] == "not_found"


def test_healthz(appliance: Any) -> None:
    response = httpx.get(appliance.dashboard_url + "/healthz", timeout=10)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_pages_link_relatively(appliance: Any, traffic: Traffic) -> None:
    paths = ["/", "/exchanges", "/sessions", "/users", "/models"]
    paths.append(f"/exchanges/{traffic.ids['first']}")
    for path in paths:
        html = httpx.get(appliance.dashboard_url + path, timeout=10).text
        assert "localhost" not in html, path
        assert 'href="http' not in html, path
        assert 'src="http' not in html, path
        assert 'action="http' not in html, path


def test_search_covers_request_body(
    appliance: Any, traffic: Traffic, page: Any
) -> None:
    # The word appears only in the system prompt, which prompt_text leaves out.
    page.goto(appliance.dashboard_url + f"/exchanges?q=sys{traffic.run}")

    assert rows_shown(page) == [traffic.ids["first"]]


def test_search_uses_index(appliance: Any, traffic: Traffic) -> None:
    where = queries.ExchangeFilter(search="whale")
    condition = where.conditions()[0]
    with psycopg.connect(appliance.conninfo(), autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        text = condition.as_string(conn)
        plan = conn.execute(
            f"EXPLAIN (FORMAT JSON) SELECT id FROM llmtap.exchange WHERE {text}"
        ).fetchone()

    # With sequential scans off, only an index matching the expression serves.
    assert plan is not None
    assert "exchange_search_idx" in json.dumps(plan[0])
