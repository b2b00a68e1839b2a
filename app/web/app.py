"""Build the dashboard's FastAPI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from psycopg.conninfo import make_conninfo
from starlette.middleware.sessions import SessionMiddleware

from app.credentials import read_secret
from app.settings import Settings
from app.store.db import conninfo
from app.web import errors
from app.web.pool import ConnectionPool
from app.web.security import SecurityHeadersMiddleware
from app.web.views import (
    api,
    exchange,
    exchanges,
    export,
    groups,
    health,
    live,
    overview,
    sessions,
    signin,
)

STATIC_DIR = Path(__file__).parent / "static"

# A session expires after a week without requests, because every response
# re-sends the signed cookie with a fresh Max-Age.
SESSION_MAX_AGE_S = 7 * 24 * 3600

# PostgreSQL settings of the dashboard's connections. The timeout only keeps a
# runaway query from holding a connection. The percentile sorts of the overview
# spill to disk at the default 4MB work_mem, and JIT compiling costs more than
# it saves on these short aggregates.
SESSION_SETTINGS = {"statement_timeout": "15s", "work_mem": "32MB", "jit": "off"}


def create_app(settings: Settings, pool: ConnectionPool | None = None) -> FastAPI:
    """Return the dashboard app for these settings, with its own connection pool."""
    if pool is None:
        pool = ConnectionPool(lambda: _web_conninfo(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await pool.close()

    # redirect_slashes would build absolute URLs from the Host header, and pages
    # must only ever link relatively.
    app = FastAPI(
        title="llmtap dashboard",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.pool = pool

    _add_middleware(app, settings)
    errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Fixed paths come before /exchanges/{id} and /api/exchanges/{id}, which
    # would otherwise take "export.csv" or "live" for an id.
    routers = (health, signin, overview, exchanges, export, exchange, live, api)
    for module in (*routers, sessions, groups):
        app.include_router(module.router)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    # Middleware added last runs first: security headers wrap every response,
    # including the session middleware's.
    app.add_middleware(
        SessionMiddleware,
        secret_key=read_secret(settings, "session"),
        session_cookie="llmtap_session",
        max_age=SESSION_MAX_AGE_S,
        same_site="lax",
        # The appliance is reached over plain HTTP by IP, so the cookie cannot
        # require HTTPS; it is still HttpOnly and SameSite.
        https_only=False,
    )
    app.add_middleware(SecurityHeadersMiddleware)


def _web_conninfo(settings: Settings) -> str:
    options = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())
    return make_conninfo(conninfo(settings, "web"), options=options)
