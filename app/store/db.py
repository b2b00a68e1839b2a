"""Connection settings for each database role.

PostgreSQL listens only on a Unix socket in DATA_DIR/run/postgres, so every
process connects through that socket with its own role and generated password.
"""

from psycopg.conninfo import make_conninfo

from app.credentials import read_secret
from app.settings import Settings

DATABASE = "llmtap"

ROLES = {
    "owner": "llmtap_owner",
    "proxy": "llmtap_proxy",
    "web": "llmtap_web",
    "authenticator": "llmtap_authenticator",
    "superuser": "postgres",
}


def conninfo(settings: Settings, role: str, dbname: str = DATABASE) -> str:
    """Return a libpq connection string for one of the ROLES keys."""
    user = ROLES[role]
    return make_conninfo(
        host=str(settings.pg_socket_dir),
        port=str(settings.postgres_port),
        dbname=dbname,
        user=user,
        password=read_secret(settings, user),
        application_name=f"llmtap-{role}",
        connect_timeout="5",
    )


def sqlalchemy_url(settings: Settings, role: str) -> str:
    """Return a SQLAlchemy URL for alembic, using the same socket and password."""
    from sqlalchemy.engine import URL

    user = ROLES[role]
    url = URL.create(
        "postgresql+psycopg",
        username=user,
        password=read_secret(settings, user),
        database=DATABASE,
        query={
            "host": str(settings.pg_socket_dir),
            "port": str(settings.postgres_port),
        },
    )
    return url.render_as_string(hide_password=False)
