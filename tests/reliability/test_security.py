"""Database roles and secrets, against the session's appliance."""

from __future__ import annotations

import json
import uuid

import httpx
import psycopg
import pytest
from psycopg import errors as pg_errors

from tests.cases.helpers import Stage, fetch, log_offset, log_since
from tests.support.appliance import Appliance
from tests.support.upstream import Script, SeenRequest, send

from .helpers import CHAT, CHAT_REQUEST

# Statements each role must be refused, with a readable id. The proxy role may
# insert and read `id` (ON CONFLICT needs it) and nothing else.
FORBIDDEN = {
    "proxy": [
        ("select-bodies", "SELECT request_body FROM llmtap.exchange LIMIT 1"),
        ("select-all", "SELECT * FROM llmtap.exchange LIMIT 1"),
        ("update", "UPDATE llmtap.exchange SET model = 'x'"),
        ("delete", "DELETE FROM llmtap.exchange"),
        ("truncate", "TRUNCATE llmtap.exchange"),
        ("create-in-llmtap", "CREATE TABLE llmtap.intruder (x int)"),
        ("create-in-public", "CREATE TABLE public.intruder (x int)"),
        ("create-schema", "CREATE SCHEMA intruder"),
        ("read-api-view", "SELECT * FROM api.exchanges LIMIT 1"),
        ("read-retention-state", "SELECT * FROM llmtap.retention_state"),
    ],
    "web": [
        (
            "insert",
            "INSERT INTO llmtap.exchange (id, started_at, method, path, endpoint,"
            " outcome) VALUES (gen_random_uuid(), now(), 'GET', '/', 'other',"
            " 'success')",
        ),
        ("update", "UPDATE llmtap.exchange SET model = 'x'"),
        ("delete", "DELETE FROM llmtap.exchange"),
        ("truncate", "TRUNCATE llmtap.exchange"),
        ("create-in-llmtap", "CREATE TABLE llmtap.intruder (x int)"),
        ("create-in-public", "CREATE TABLE public.intruder (x int)"),
        ("run-retention", "SELECT llmtap.apply_retention(NULL, 0, 1)"),
    ],
    "authenticator": [
        ("select-table", "SELECT id FROM llmtap.exchange LIMIT 1"),
        ("select-api-view", "SELECT id FROM api.exchanges LIMIT 1"),
        ("select-summaries", "SELECT id FROM api.exchange_summaries LIMIT 1"),
        ("run-retention", "SELECT llmtap.apply_retention(NULL, 0, 1)"),
        ("create-in-public", "CREATE TABLE public.intruder (x int)"),
    ],
    "api_reader": [
        ("select-table", "SELECT id FROM llmtap.exchange LIMIT 1"),
        (
            "insert-view",
            "INSERT INTO api.exchanges (id, started_at, method, path, endpoint,"
            " outcome) VALUES (gen_random_uuid(), now(), 'GET', '/', 'other',"
            " 'success')",
        ),
        ("update-view", "UPDATE api.exchanges SET model = 'x'"),
        ("delete-view", "DELETE FROM api.exchanges"),
        ("create-in-api", "CREATE VIEW api.intruder AS SELECT 1"),
    ],
    "api_anon": [
        ("select-table", "SELECT id FROM llmtap.exchange LIMIT 1"),
        ("select-bodies-view", "SELECT id FROM api.exchanges LIMIT 1"),
        ("delete-view", "DELETE FROM api.exchange_summaries"),
        ("create-in-api", "CREATE VIEW api.intruder AS SELECT 1"),
    ],
}
CASES = [(role, name, statement) for role, items in FORBIDDEN.items()
         for name, statement in items]  # fmt: skip


def run_as(appliance: Appliance, role: str, statement: str) -> None:
    """Run one statement as a login role, or as an API role via the authenticator."""
    login = "llmtap_authenticator" if role.startswith("api_") else f"llmtap_{role}"
    with psycopg.connect(appliance.conninfo(login), autocommit=True) as conn:
        if role.startswith("api_"):
            conn.execute(f"SET ROLE llmtap_{role}")
        conn.execute(statement)


@pytest.mark.parametrize(
    ("role", "statement"),
    [(role, statement) for role, _, statement in CASES],
    ids=[f"{role}-{name}" for role, name, _ in CASES],
)
def test_role_refused(appliance: Appliance, role: str, statement: str) -> None:
    with pytest.raises(pg_errors.InsufficientPrivilege):
        run_as(appliance, role, statement)


def test_proxy_role_runs_retention(appliance: Appliance) -> None:
    """The proxy role may run retention, which deletes nothing with no limits."""
    rows = appliance.query(
        "SELECT llmtap.apply_retention(NULL, 0, 10) AS deleted", user="llmtap_proxy"
    )

    assert rows == [{"deleted": 0}]


def test_api_reader_reads_views(appliance: Appliance) -> None:
    """The refusals above are not a broken login: the reader does read its views."""
    with psycopg.connect(appliance.conninfo("llmtap_authenticator")) as conn:
        conn.execute("SET ROLE llmtap_api_reader")
        conn.execute("SELECT count(*) FROM api.exchanges").fetchone()


def test_no_runtime_superuser_connection(
    appliance: Appliance, stage: Stage, client: httpx.Client
) -> None:
    """Every connection of the running processes uses its own unprivileged role."""
    script = Script(headers=[("Content-Type", "application/json")], steps=[send(b"{}")])
    headers = stage.play("POST", CHAT, script)
    reply = fetch(
        client,
        "POST",
        appliance.proxy_url + CHAT,
        headers=headers,
        content=CHAT_REQUEST,
    )
    assert appliance.exchange(reply.exchange_id or "") is not None
    httpx.get(f"{appliance.dashboard_url}/rest/v1/exchange_summaries?limit=1")

    backends = appliance.query(
        "SELECT usename, application_name FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    users = {row["usename"] for row in backends}

    assert "postgres" not in users, backends
    assert "llmtap_owner" not in users, backends
    assert "llmtap_proxy" in users
    assert users <= {"llmtap_proxy", "llmtap_web", "llmtap_authenticator"}


SECRETS = {
    "authorization": "sk-reliability-AUTHZ-0123456789abcdef",
    "x-api-key": "reliability-XAPIKEY-0123456789",
    "cookie": "reliability-COOKIE-0123456789",
    "helicone-auth": "hk-reliability-HAUTH-0123456789",
    "query-key": "reliability-QKEY-0123456789",
    "query-token": "reliability-QTOKEN-0123456789",
}


def echo_authorization(request: SeenRequest) -> Script:
    """Reply 401 and quote the credential back, as some model servers do."""
    message = f"Incorrect API key provided: {request.header('Authorization')}"
    quoted = json.dumps({"error": {"message": message}}).encode()
    return Script(status=401, headers=[("Content-Type", "application/json")],
                  steps=[send(quoted)])  # fmt: skip


@pytest.mark.parametrize("entry", ["proxy", "nginx"])
def test_secrets_absent_from_logs_and_rows(
    appliance: Appliance, stage: Stage, client: httpx.Client, entry: str
) -> None:
    """Credentials in headers and query reach the upstream, never a log or a row."""
    headers = stage.play("POST", CHAT, echo_authorization)
    headers.update(
        {
            "Authorization": f"Bearer {SECRETS['authorization']}",
            "x-api-key": SECRETS["x-api-key"],
            "Cookie": f"session={SECRETS['cookie']}; theme=dark",
            "Helicone-Auth": f"Bearer {SECRETS['helicone-auth']}",
            "Content-Type": "application/json",
            "Helicone-Request-Id": str(uuid.uuid4()),
        }
    )
    query = f"?key={SECRETS['query-key']}&token={SECRETS['query-token']}&model=x"
    base_url = appliance.proxy_url if entry == "proxy" else appliance.entry_url
    offset = log_offset(appliance)

    reply = fetch(
        client, "POST", base_url + CHAT + query, headers=headers, content=CHAT_REQUEST
    )
    seen = stage.seen(headers)
    row = appliance.exchange(headers["Helicone-Request-Id"])
    assert row is not None
    text = appliance.query(
        "SELECT row_to_json(e)::text AS text FROM llmtap.exchange e WHERE id = %s",
        headers["Helicone-Request-Id"],
    )[0]["text"]
    log = log_since(appliance, offset)

    assert reply.status == 401
    assert SECRETS["authorization"].encode() in reply.body
    assert seen.header("Authorization") == headers["Authorization"]
    assert SECRETS["query-key"] in seen.target
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} stored in the row"
        assert secret not in log, f"{name} written to the log"
    assert row["query"] is not None
    assert "key=***" in row["query"]


def test_generated_secrets_absent_from_log(appliance: Appliance) -> None:
    """No generated password or key appears in any process's output.

    The dashboard password is left out: boot prints a generated one once, on
    purpose, so the operator can sign in.
    """
    log = appliance.log_path.read_text(errors="replace")
    for path in sorted((appliance.data_dir / "secrets").glob("*.secret")):
        if path.stem == "dashboard":
            continue
        secret = path.read_text().strip()
        assert secret not in log, f"{path.name} written to the log"
