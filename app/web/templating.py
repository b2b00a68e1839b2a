"""The Jinja2 environment of the dashboard pages, with autoescaping on."""

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.web import auth, formatting, spool

TEMPLATE_DIR = Path(__file__).parent / "templates"

templates = Jinja2Templates(directory=TEMPLATE_DIR)
templates.env.filters.update(
    time=formatting.format_time,
    ms=formatting.format_ms,
    cost=formatting.format_cost,
    count=formatting.format_count,
    pretty_json=formatting.pretty_json,
)


def render(
    request: Request, name: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render a page template with the values every page needs."""
    settings = request.app.state.settings
    enabled = auth.auth_enabled(settings)
    context.update(
        # Only the sign-in and sign-out forms post, so without sign-in no CSRF
        # token (and no session cookie) is needed.
        csrf_token=auth.csrf_token(request) if enabled else "",
        auth_enabled=enabled,
        signed_in=auth.is_signed_in(request),
        dropped=spool.dropped_exchanges(settings),
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)
