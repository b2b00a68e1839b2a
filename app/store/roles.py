"""Database roles, the database and its schemas; idempotent, run as the superuser.

Login roles get the generated passwords from DATA_DIR/secrets. PostgREST logs in
as llmtap_authenticator, which has no privileges of its own (NOINHERIT) and
can only switch to the read-only API roles.
"""

import logging
import time

import psycopg
from psycopg import sql

from app.credentials import read_secret
from app.settings import Settings
from app.store.db import DATABASE, conninfo

logger = logging.getLogger(__name__)

LOGIN_ROLES = {
    "llmtap_owner": "",
    "llmtap_proxy": "",
    "llmtap_web": "",
    "llmtap_authenticator": "NOINHERIT",
}
API_ROLES = ("llmtap_api_reader", "llmtap_api_anon")


def wait_until_accepting(settings: Settings, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(conninfo(settings, "superuser", dbname="postgres")):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def apply(settings: Settings) -> list[str]:
    """Create or update roles, the database and the schemas; return what was done."""
    done: list[str] = []
    with psycopg.connect(
        conninfo(settings, "superuser", dbname="postgres"), autocommit=True
    ) as conn:
        for role, options in LOGIN_ROLES.items():
            done.append(_ensure_login_role(conn, settings, role, options))
        for role in API_ROLES:
            done.append(_ensure_role(conn, role))
        conn.execute("GRANT llmtap_api_reader, llmtap_api_anon TO llmtap_authenticator")
        done.append(_ensure_database(conn))

    with psycopg.connect(conninfo(settings, "superuser"), autocommit=True) as conn:
        _secure_database(conn)
    done.append("schemas llmtap, api and grants in place")
    return done


def _ensure_login_role(
    conn: psycopg.Connection, settings: Settings, role: str, options: str
) -> str:
    created = _ensure_role(conn, role, login=True)
    password = read_secret(settings, role)
    conn.execute(
        sql.SQL(
            "ALTER ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {} "
            "PASSWORD {}"
        ).format(
            sql.Identifier(role), sql.SQL(options or "INHERIT"), sql.Literal(password)
        )
    )
    return created


def _ensure_role(conn: psycopg.Connection, role: str, login: bool = False) -> str:
    exists = conn.execute(
        "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if exists:
        return f"role {role} exists"
    conn.execute(
        sql.SQL("CREATE ROLE {} {}").format(
            sql.Identifier(role), sql.SQL("LOGIN" if login else "NOLOGIN")
        )
    )
    return f"role {role} created"


def _ensure_database(conn: psycopg.Connection) -> str:
    exists = conn.execute(
        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
    ).fetchone()
    if exists:
        return f"database {DATABASE} exists"
    conn.execute(
        sql.SQL("CREATE DATABASE {} OWNER llmtap_owner").format(
            sql.Identifier(DATABASE)
        )
    )
    return f"database {DATABASE} created"


def _secure_database(conn: psycopg.Connection) -> None:
    statements = [
        f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} "
        "TO llmtap_owner, llmtap_proxy, llmtap_web, llmtap_authenticator",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        "CREATE SCHEMA IF NOT EXISTS llmtap AUTHORIZATION llmtap_owner",
        "CREATE SCHEMA IF NOT EXISTS api AUTHORIZATION llmtap_owner",
        "REVOKE ALL ON SCHEMA llmtap FROM PUBLIC",
        "REVOKE ALL ON SCHEMA api FROM PUBLIC",
        "GRANT USAGE ON SCHEMA api TO llmtap_api_reader, llmtap_api_anon",
    ]
    for statement in statements:
        conn.execute(statement)
