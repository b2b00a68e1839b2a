"""Prepare the data directory and hand over to supervisord.

Run as root: `python -m app.boot`. On an empty data directory it creates the
PostgreSQL cluster, the login roles with generated passwords and the empty
schemas, so that every program can connect from its first start. Each start
renders the nginx and PostgREST configurations into DATA_DIR/run and then
replaces itself with supervisord in the foreground.
"""

import logging
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from app import credentials
from app.logs import configure_logging
from app.settings import Settings, settings_or_exit
from app.store import roles

logger = logging.getLogger(__name__)

APP_USER = "llmtap"
PG_USER = "postgres"
PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)


def main() -> None:
    configure_logging()
    settings = settings_or_exit()
    if os.geteuid() != 0:
        sys.exit(
            "app.boot must run as root: supervisord switches each program to its own "
            "user (postgres, llmtap); run it with sudo or in the container"
        )

    warn_about_upstream(settings)
    environment = prepare(settings)
    logger.info("starting supervisord data_dir=%s", settings.data_dir)
    os.execvpe(
        environment["LLMTAP_PYTHON"],
        [
            environment["LLMTAP_PYTHON"],
            "-m",
            "supervisor.supervisord",
            "-n",
            "-c",
            str(settings.home / "supervisord.conf"),
        ],
        environment,
    )


def warn_about_upstream(settings: Settings) -> None:
    if not settings.upstream_url:
        logger.warning(
            "LLMTAP_UPSTREAM_URL is not set: requests without Helicone-Target-URL "
            "get 400 target_missing"
        )
        return
    path = urlsplit(settings.upstream_url).path
    if path not in ("", "/"):
        logger.warning(
            "LLMTAP_UPSTREAM_URL=%s has the path %s, which is ignored: only the "
            "origin counts, and clients send the path (/v1/...) themselves",
            settings.upstream_url,
            path,
        )


def prepare(settings: Settings) -> dict[str, str]:
    """Initialise the data directory and configs; return supervisord's environment."""
    app_user = ensure_user(APP_USER)
    pg_user = pwd.getpwnam(PG_USER)
    make_directories(settings, app_user, pg_user)
    create_secrets(settings, app_user)

    pg_bin = find_pg_bin()
    if not (settings.pg_data_dir / "PG_VERSION").exists():
        initialise_cluster(settings, pg_bin, pg_user)

    render_configs(settings, app_user)
    environment = supervisor_environment(settings, pg_bin)
    environment["LLMTAP_APP_USER"] = choose_app_user(settings, app_user)
    return environment


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
        )
        return pwd.getpwnam(name)


def choose_app_user(settings: Settings, app_user: pwd.struct_passwd) -> str:
    """Return the user for nginx, PostgREST, the proxy and the dashboard.

    They run as llmtap unless it cannot read the code or the Python interpreter
    (a checkout under /root, say); then as root, with a warning.
    """
    probe = subprocess.run(
        [sys.executable, "-c", "import app.settings"],
        cwd=settings.home,
        user=app_user.pw_uid,
        group=app_user.pw_gid,
        env={"PYTHONPATH": str(settings.home)},
        capture_output=True,
    )
    if probe.returncode == 0:
        return APP_USER
    logger.warning(
        "user %s cannot run %s from %s; the app processes run as root. Install "
        "llmtap and its virtualenv in a directory every user can read, such as /opt",
        APP_USER,
        sys.executable,
        settings.home,
    )
    return "root"


def make_directories(
    settings: Settings, app_user: pwd.struct_passwd, pg_user: pwd.struct_passwd
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o755)
    owned = {
        settings.run_dir: (0, 0, 0o755),
        settings.secrets_dir: (0, 0, 0o711),
        settings.spool_dir: (app_user.pw_uid, app_user.pw_gid, 0o700),
        settings.run_dir / "nginx": (app_user.pw_uid, app_user.pw_gid, 0o700),
        settings.pg_socket_dir: (pg_user.pw_uid, pg_user.pw_gid, 0o755),
        settings.pg_data_dir: (pg_user.pw_uid, pg_user.pw_gid, 0o700),
    }
    for path, (uid, gid, mode) in owned.items():
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)


def create_secrets(settings: Settings, app_user: pwd.struct_passwd) -> None:
    """Generate missing secrets, each readable only by the process that uses it."""
    readers = {
        "postgres": None,
        "llmtap_owner": None,
        "llmtap_proxy": app_user,
        "llmtap_web": app_user,
        "llmtap_authenticator": app_user,
        "jwt": app_user,
        "session": app_user,
        "dashboard": app_user,
    }
    for name, reader in readers.items():
        owner = (reader.pw_uid, reader.pw_gid) if reader else None
        created = credentials.ensure_secret(settings, name, owner)
        if name == "dashboard" and created and not settings.dashboard_password:
            if settings.dashboard_auth == "on":
                password = credentials.read_secret(settings, "dashboard")
                # Printed once, at the first boot only: the operator's only copy
                # apart from the 0600 file on the volume.
                print(f"llmtap dashboard password (shown once): {password}", flush=True)


def find_pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    sys.exit(
        "PostgreSQL 15 is missing from /usr/lib/postgresql/15/bin; "
        "install postgresql-15"
    )


def initialise_cluster(
    settings: Settings, pg_bin: Path, pg_user: pwd.struct_passwd
) -> None:
    """Create the cluster, then its roles, database and schemas (temporary server)."""
    logger.info("initialising database cluster path=%s", settings.pg_data_dir)
    # initdb runs as postgres, which may not read the secrets directory: it gets
    # a copy of the superuser password that only it can read, removed at once.
    password_copy = settings.run_dir / "initdb.password"
    password = credentials.secret_path(settings, "postgres").read_bytes()
    password_copy.write_bytes(password)
    os.chown(password_copy, pg_user.pw_uid, pg_user.pw_gid)
    os.chmod(password_copy, 0o600)
    try:
        subprocess.run(
            [
                str(pg_bin / "initdb"),
                "-D",
                str(settings.pg_data_dir),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                f"--pwfile={password_copy}",
            ],
            user=pg_user.pw_uid,
            group=pg_user.pw_gid,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        password_copy.unlink(missing_ok=True)
    write_postgres_conf(settings)

    server = start_temporary_server(settings, pg_bin, pg_user)
    try:
        roles.apply(settings)
    finally:
        server.terminate()
        server.wait(timeout=30)


def write_postgres_conf(settings: Settings) -> None:
    extra = settings.pg_data_dir / "postgresql.llmtap.conf"
    extra.write_text(
        "# Written by app.boot. Only the Unix socket: no TCP port is opened.\n"
        "listen_addresses = ''\n"
        f"unix_socket_directories = '{settings.pg_socket_dir}'\n"
        "logging_collector = off\n"
        "log_destination = 'stderr'\n"
        "log_line_prefix = 'postgres %m [%p] '\n"
        # The proxy writes in batches and tolerates losing the last few
        # hundred milliseconds on a crash because its spool keeps them.
        "synchronous_commit = off\n"
    )
    conf = settings.pg_data_dir / "postgresql.conf"
    with conf.open("a") as handle:
        handle.write("\ninclude = 'postgresql.llmtap.conf'\n")
    shutil.copy(
        settings.pg_data_dir / "pg_hba.conf",
        settings.pg_data_dir / "pg_hba.conf.initdb",
    )
    (settings.pg_data_dir / "pg_hba.conf").write_text(
        "# Written by app.boot: password logins on the Unix socket only.\n"
        "local all all scram-sha-256\n"
    )
    pg_user = pwd.getpwnam(PG_USER)
    for name in ("postgresql.llmtap.conf", "pg_hba.conf", "pg_hba.conf.initdb"):
        os.chown(settings.pg_data_dir / name, pg_user.pw_uid, pg_user.pw_gid)


def start_temporary_server(
    settings: Settings, pg_bin: Path, pg_user: pwd.struct_passwd
) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            str(pg_bin / "postgres"),
            "-D",
            str(settings.pg_data_dir),
            "-p",
            str(settings.postgres_port),
        ],
        user=pg_user.pw_uid,
        group=pg_user.pw_gid,
    )
    socket = settings.pg_socket_dir / f".s.PGSQL.{settings.postgres_port}"
    deadline = time.monotonic() + 60
    while not socket.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                f"temporary PostgreSQL server did not start (socket {socket})"
            )
        time.sleep(0.1)
    roles.wait_until_accepting(settings, timeout_s=30)
    return server


def render_configs(settings: Settings, app_user: pwd.struct_passwd) -> None:
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(settings.home / "nginx"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    nginx_conf = templates.get_template("nginx.conf.j2").render(
        settings=settings, nginx_body_limit=settings.max_request_bytes
    )
    (settings.run_dir / "nginx.conf").write_text(nginx_conf)

    postgrest_conf = settings.run_dir / "postgrest.conf"
    postgrest_conf.write_text(render_postgrest_conf(settings))
    os.chown(postgrest_conf, app_user.pw_uid, app_user.pw_gid)
    os.chmod(postgrest_conf, 0o600)


def render_postgrest_conf(settings: Settings) -> str:
    from app.store.db import conninfo

    anonymous = "llmtap_api_anon" if settings.api_anonymous else ""
    jwt_path = credentials.secret_path(settings, "jwt")
    return (
        f'db-uri = "{conninfo(settings, "authenticator")}"\n'
        'db-schemas = "api"\n'
        f'db-anon-role = "{anonymous}"\n'
        f'jwt-secret = "@{jwt_path}"\n'
        'server-host = "127.0.0.1"\n'
        f"server-port = {settings.postgrest_port}\n"
        'admin-server-host = "127.0.0.1"\n'
        f"admin-server-port = {settings.postgrest_admin_port}\n"
        # A small pool: PostgREST serves occasional API reads, not the proxy.
        "db-pool = 4\n"
        'log-level = "warn"\n'
    )


def supervisor_environment(settings: Settings, pg_bin: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        LLMTAP_HOME=str(settings.home),
        LLMTAP_DATA_DIR=str(settings.data_dir),
        LLMTAP_PYTHON=sys.executable,
        LLMTAP_PG_BIN=str(pg_bin),
        LLMTAP_POSTGRES_PORT=str(settings.postgres_port),
        LLMTAP_POSTGREST_BIN=shutil.which("postgrest") or "/usr/local/bin/postgrest",
        LLMTAP_NGINX_BIN=shutil.which("nginx") or "/usr/sbin/nginx",
        PYTHONPATH=str(settings.home),
        PYTHONUNBUFFERED="1",
    )
    return environment


if __name__ == "__main__":
    main()
