"""Before the first migration the dashboard explains how to create the schema."""

from __future__ import annotations

from typing import Any

import httpx


def test_pages_say_schema_missing_then_work(fresh_appliance: Any) -> None:
    base = fresh_appliance.dashboard_url
    paths = ["/", "/exchanges", "/sessions", "/users", "/models"]

    before = {path: httpx.get(base + path, timeout=10) for path in paths}
    api_before = httpx.get(base + "/api/exchanges", timeout=10)
    streams_before = [
        httpx.get(base + path, timeout=10)
        for path in ("/api/exchanges/live", "/exchanges/export.csv")
    ]
    health = httpx.get(base + "/healthz", timeout=10)
    result = fresh_appliance.migrate()
    after = {path: httpx.get(base + path, timeout=10) for path in paths}

    for path, response in before.items():
        assert response.status_code == 503, path
        assert "The database schema is missing" in response.text, path
        assert "kubectl exec POD -- migrate" in response.text, path
        assert "scripts/migrate" in response.text, path
    assert api_before.json()["error"]["type"] == "schema_missing"
    for response in streams_before:
        assert response.status_code == 503, response.url
        assert "schema is missing" in response.text, response.url
    assert health.status_code == 200
    assert result.returncode == 0, result.stdout + result.stderr
    for path, response in after.items():
        assert response.status_code == 200, path
        assert "schema is missing" not in response.text, path


def test_pages_survive_database_restart(fresh_appliance: Any) -> None:
    base = fresh_appliance.dashboard_url
    assert fresh_appliance.migrate().returncode == 0
    # Fill the pool with idle connections that the restart then breaks.
    assert httpx.get(base + "/exchanges", timeout=10).status_code == 200

    restart = fresh_appliance.supervisorctl("restart", "postgres")
    fresh_appliance.wait_database()
    response = httpx.get(base + "/exchanges", timeout=10)

    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert response.status_code == 200
