"""Map the dashboard's failures to one page shape and one JSON shape.

JSON errors look like the proxy's: {"error": {"message", "type"}}. Pages render
error.html, or schema_missing.html before the first migration.
"""

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from psycopg import errors as pg_errors
from starlette.exceptions import HTTPException

from app.store.queries import SchemaMissingError
from app.web.auth import CsrfError, SignInRequiredError
from app.web.pool import DatabaseUnavailableError
from app.web.templating import render

logger = logging.getLogger(__name__)

SCHEMA_MISSING_MESSAGE = (
    "The database schema is missing: table llmtap.exchange does not exist yet. "
    "Run the migrations to create it: `kubectl exec POD -- migrate` in the pod, "
    "or `scripts/migrate` on a host. This page works as soon as they have run."
)


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


# Page titles where the error type does not read well when capitalised.
ERROR_TITLES = {"csrf_failed": "CSRF check failed"}


def error_response(
    request: Request, status_code: int, error_type: str, message: str
) -> Response:
    """Return the JSON error for API paths and the error page for everything else."""
    if wants_json(request):
        body = {"error": {"message": message, "type": error_type}}
        return JSONResponse(body, status_code=status_code)
    title = ERROR_TITLES.get(error_type, error_type.replace("_", " ").capitalize())
    return render(
        request,
        "error.html",
        status_code=status_code,
        title=title,
        message=message,
    )


async def _sign_in_required(request: Request, _: Exception) -> Response:
    if wants_json(request):
        message = "sign-in required: POST the dashboard password to /signin first"
        return error_response(request, 401, "unauthorized", message)
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse("/signin?next=" + quote(target, safe=""), status_code=303)


async def _schema_missing(request: Request, _: Exception) -> Response:
    if wants_json(request):
        return error_response(request, 503, "schema_missing", SCHEMA_MISSING_MESSAGE)
    return render(
        request, "schema_missing.html", status_code=503, message=SCHEMA_MISSING_MESSAGE
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    message = f"The database is unavailable ({exc}). Reload this page in a few seconds."
    return error_response(request, 503, "database_unavailable", message)


async def _query_cancelled(request: Request, exc: Exception) -> Response:
    logger.warning("query cancelled path=%s error=%s", request.url.path, exc)
    message = "The query took too long and was cancelled; narrow the filters and retry."
    return error_response(request, 503, "query_timeout", message)


async def _csrf(request: Request, _: Exception) -> Response:
    message = "The form had no valid CSRF token; reload the page and submit it again."
    return error_response(request, 403, "csrf_failed", message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error_type = "not_found" if exc.status_code == 404 else "http_error"
    return error_response(request, exc.status_code, error_type, str(exc.detail))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
    )
    return error_response(request, 422, "invalid_request", problems)


def install(app: FastAPI) -> None:
    """Register the exception handlers on app."""
    app.add_exception_handler(SignInRequiredError, _sign_in_required)
    app.add_exception_handler(SchemaMissingError, _schema_missing)
    app.add_exception_handler(DatabaseUnavailableError, _database_unavailable)
    app.add_exception_handler(pg_errors.QueryCanceled, _query_cancelled)
    app.add_exception_handler(CsrfError, _csrf)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
