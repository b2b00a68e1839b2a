"""The PostgREST API behind /rest/v1/: read-only views, token required."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from tests.conftest import require_components
from tests.support.appliance import Appliance

from .helpers import Traffic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def token(appliance: Any) -> str:
    """A reader token printed by scripts/api-token for the test appliance."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "api-token"), "--days", "1"],
        env={**appliance.env, "LLMTAP_PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def rest(
    appliance: Any, path: str, token: str | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    method = kwargs.pop("method", "GET")
    url = appliance.dashboard_url + "/rest/v1/" + path
    return httpx.request(method, url, headers=headers, timeout=10, **kwargs)


def test_token_claims(appliance: Any, token: str) -> None:
    secret = (appliance.data_dir / "secrets" / "jwt.secret").read_text().strip()

    claims = jwt.decode(token, secret, algorithms=["HS256"])

    assert claims["role"] == "llmtap_api_reader"
    assert claims["exp"] > 0


def test_views_filter_with_token(appliance: Any, traffic: Traffic, token: str) -> None:
    model = traffic.models["other"]
    query = f"exchange_summaries?model=eq.{model}&select=id,model,latency_ms"
    query += "&order=started_at.desc&limit=10"

    response = rest(appliance, query, token)

    assert response.status_code == 200
    assert response.json()[0]["id"] == traffic.ids["other"]
    assert set(response.json()[0]) == {"id", "model", "latency_ms"}


def test_views_filter_by_property(appliance: Any, traffic: Traffic, token: str) -> None:
    query = (
        f"exchange_summaries?properties->>team=eq.blue&session_id=eq.{traffic.session}"
    )

    response = rest(appliance, query + "&select=id", token)

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()}
    assert ids == {traffic.ids["first"], traffic.ids["stream"]}


@pytest.mark.parametrize("view", ["exchanges", "sessions", "users", "models"])
def test_each_view_returns_rows(
    appliance: Any, traffic: Traffic, token: str, view: str
) -> None:
    response = rest(appliance, f"{view}?limit=1", token)

    assert response.status_code == 200
    assert len(response.json()) == 1


def test_session_view_totals(appliance: Any, traffic: Traffic, token: str) -> None:
    response = rest(appliance, f"sessions?session_id=eq.{traffic.session}", token)

    assert response.status_code == 200
    assert response.json()[0]["exchanges"] == 2
    assert response.json()[0]["session_name"] == "dashboard test chat"


def test_views_reject_without_token(appliance: Any, traffic: Traffic) -> None:
    for view in ("exchanges", "exchange_summaries", "models"):
        response = rest(appliance, f"{view}?limit=1")
        assert response.status_code == 401, view
        assert response.json()["code"] == "PGRST302", view


def test_forged_token_rejected(appliance: Any) -> None:
    forged = jwt.encode({"role": "llmtap_api_reader"}, "x" * 40, algorithm="HS256")

    assert rest(appliance, "exchanges?limit=1", forged).status_code == 401


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_reader_cannot_write(
    appliance: Any, traffic: Traffic, token: str, method: str
) -> None:
    target = f"exchange_summaries?id=eq.{traffic.ids['first']}"
    body = {"model": "changed"}

    response = rest(appliance, target, token, method=method, json=body)

    assert response.status_code == 403
    assert response.json()["code"] == "42501"
    row = appliance.exchange(traffic.ids["first"])
    assert row is not None
    assert row["model"] == traffic.models["main"]


def as_role(appliance: Any, role: str, query: str) -> list[tuple[Any, ...]]:
    """Run query as role, switching to it from a superuser connection."""
    with psycopg.connect(appliance.conninfo(), autocommit=True) as conn:
        conn.execute(f"SET ROLE {role}")
        return conn.execute(query).fetchall()


def test_reader_cannot_reach_table(appliance: Any, token: str) -> None:
    response = rest(appliance, "exchange?limit=1", token)

    assert response.status_code == 404
    assert response.json()["code"] == "42P01"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(
            appliance, "llmtap_api_reader", "SELECT id FROM llmtap.exchange LIMIT 1"
        )


def test_anonymous_role_sees_no_bodies(appliance: Any, traffic: Traffic) -> None:
    summaries = as_role(
        appliance, "llmtap_api_anon", "SELECT count(*) FROM api.exchange_summaries"
    )
    columns = appliance.query(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'api' AND table_name = 'exchange_summaries'"
    )

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(appliance, "llmtap_api_anon", "SELECT 1 FROM api.exchanges LIMIT 1")
    assert summaries[0][0] >= len(traffic.ids)
    names = {row["column_name"] for row in columns}
    hidden = {"request_body", "response_body", "request_headers", "response_headers"}
    assert not names & hidden


@pytest.fixture(scope="module")
def anonymous_appliance(upstream: Any) -> Iterator[Any]:
    """An appliance of its own with LLMTAP_API_ANONYMOUS=true, migrated."""
    require_components()
    root = Path(tempfile.mkdtemp(prefix="llmtap-anon-"))
    # PostgreSQL and the app processes run as their own users and must reach it.
    root.chmod(0o755)
    try:
        with Appliance(root / "data", upstream.url, api_anonymous="true") as running:
            result = running.migrate()
            assert result.returncode == 0, result.stdout + result.stderr
            yield running
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_anonymous_reads_summaries_only(anonymous_appliance: Any) -> None:
    summaries = rest(anonymous_appliance, "exchange_summaries?limit=1")
    models = rest(anonymous_appliance, "models?limit=1")
    bodies = rest(anonymous_appliance, "exchanges?limit=1")

    assert summaries.status_code == 200
    assert models.status_code == 200
    assert bodies.status_code == 401
    assert bodies.json()["code"] == "42501"
