"""Stored prompts and answers full of markup stay inert text on every page."""

from __future__ import annotations

from typing import Any

from .helpers import XSS_PROMPT, Traffic, json_script


def assert_inert(page: Any) -> None:
    assert page.evaluate("window.__xss === undefined")
    assert page.locator("iframe").count() == 0
    assert page.locator("img[src=x]").count() == 0
    assert page.console_log.dialogs == []


def test_list_renders_markup_inert(appliance: Any, traffic: Traffic, page: Any) -> None:
    page.goto(appliance.dashboard_url + f"/exchanges?user={traffic.user}")

    row = page.locator(f'tr[data-id="{traffic.ids["xss"]}"]')
    assert row.locator("[data-field=prompt]").inner_text().startswith("<script>")
    assert page.locator("#exchange-table tbody tr").count() == 4
    assert_inert(page)


def test_detail_renders_markup_inert(
    appliance: Any, traffic: Traffic, page: Any
) -> None:
    page.goto(appliance.dashboard_url + f"/exchanges/{traffic.ids['xss']}")

    user_text = page.locator(".message.role-user .text").inner_text()
    reply_text = page.locator(".message.role-assistant .text").inner_text()
    assert user_text == XSS_PROMPT + traffic.run
    assert reply_text == XSS_PROMPT
    assert XSS_PROMPT[:20] in page.locator("#request-body").inner_text()
    assert_inert(page)


def test_live_row_renders_markup_inert(
    appliance: Any, traffic: Traffic, sender: Any, page: Any
) -> None:
    user = f"{traffic.user}-xss-live"
    page.goto(appliance.dashboard_url + f"/exchanges?user={user}")
    # A locator wait, because wait_for_function evaluates a string, which the
    # page's Content-Security-Policy forbids.
    page.locator("#live-status", has_text="waiting").wait_for(timeout=10_000)

    exchange_id = sender.chat(
        json_script(XSS_PROMPT, traffic.models["main"]),
        [{"role": "user", "content": XSS_PROMPT}],
        model=traffic.models["main"],
        headers={"Helicone-User-Id": user},
    )

    page.wait_for_selector(f'tr[data-id="{exchange_id}"]', timeout=10_000)
    cell = page.locator(f'tr[data-id="{exchange_id}"] [data-field=response]')
    assert cell.inner_text() == XSS_PROMPT[:200]
    assert_inert(page)


def test_pages_send_security_headers(
    appliance: Any, traffic: Traffic, page: Any
) -> None:
    response = page.goto(appliance.dashboard_url + f"/exchanges/{traffic.ids['xss']}")

    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
