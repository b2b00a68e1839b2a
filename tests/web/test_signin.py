"""Sign-in with the dashboard password, CSRF tokens and the failure limit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import SignedInApp


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


@pytest.fixture
def client(auth_app: SignedInApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_app.url, timeout=10) as http:
        yield http


def sign_in(client: httpx.Client, password: str, address: str) -> httpx.Response:
    token = csrf_of(client.get("/signin").text)
    form = {"csrf": token, "password": password, "next": "/exchanges"}
    return client.post("/signin", data=form, headers={"X-Forwarded-For": address})


def test_pages_redirect_to_signin(client: httpx.Client) -> None:
    response = client.get("/exchanges?model=x")

    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=%2Fexchanges%3Fmodel%3Dx"


def test_api_requires_signin(client: httpx.Client) -> None:
    response = client.get("/api/exchanges")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "unauthorized"


def test_healthz_needs_no_signin(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200


def test_signin_opens_pages_and_api(
    client: httpx.Client, auth_app: SignedInApp, traffic: Any
) -> None:
    response = sign_in(client, auth_app.password, "10.1.0.1")

    assert response.status_code == 303
    assert response.headers["location"] == "/exchanges"
    assert client.get("/exchanges").status_code == 200
    assert client.get(f"/api/exchanges/{traffic.ids['first']}").status_code == 200


def test_signin_rejects_wrong_password(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    response = sign_in(client, "wrong password 1234", "10.1.0.2")

    assert response.status_code == 200
    assert "Wrong password" in response.text
    assert client.get("/api/exchanges").status_code == 401
    assert "sign-in failed client=10.1.0.2" in caplog.text
    assert "wrong password 1234" not in caplog.text


def test_signin_rejects_missing_csrf(
    client: httpx.Client, auth_app: SignedInApp
) -> None:
    client.get("/signin")
    response = client.post("/signin", data={"password": auth_app.password})

    assert response.status_code == 403
    assert client.get("/api/exchanges").status_code == 401


def test_signin_limits_failures(client: httpx.Client, auth_app: SignedInApp) -> None:
    statuses = [sign_in(client, "nope-nope", "10.1.0.3").status_code for _ in range(6)]
    blocked = sign_in(client, auth_app.password, "10.1.0.3")
    elsewhere = sign_in(client, auth_app.password, "10.1.0.4")

    assert statuses == [200] * 5 + [429]
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert elsewhere.status_code == 303


def test_signout_ends_session(client: httpx.Client, auth_app: SignedInApp) -> None:
    sign_in(client, auth_app.password, "10.1.0.5")
    token = csrf_of(client.get("/exchanges").text)

    response = client.post("/signout", data={"csrf": token})

    assert response.status_code == 303
    assert client.get("/api/exchanges").status_code == 401


def test_signin_in_browser(auth_app: SignedInApp, page: Any) -> None:
    page.goto(auth_app.url + "/users")
    page.wait_for_url("**/signin?next=*")
    page.fill("input[name=password]", "not it")
    page.click("form.signin button[type=submit]")
    assert "Wrong password" in page.locator("#signin-error").inner_text()

    page.fill("input[name=password]", auth_app.password)
    page.click("form.signin button[type=submit]")
    page.wait_for_url("**/users")
    assert page.locator("h1").inner_text() == "Users"
