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

# The dashboard's slowest page query stays far below this; the limit only keeps a
# runaway query from holding a connection.
STATEMENT_TIMEOUT = "15s"


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
    return make_conninfo(
        conninfo(settings, "web"), options=f"-c statement_timeout={STATEMENT_TIMEOUT}"
    )
