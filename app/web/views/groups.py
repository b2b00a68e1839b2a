"""The users and models pages: per-group totals linking to the filtered list."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.store import summaries
from app.web import filters
from app.web.auth import require_sign_in
from app.web.templating import render

router = APIRouter(dependencies=[Depends(require_sign_in)])

DEFAULT_RANGE = "24h"


@router.get("/users")
async def user_list(request: Request) -> Response:
    return await _group_page(request, "user", "users.html")


@router.get("/models")
async def model_list(request: Request) -> Response:
    return await _group_page(request, "model", "models.html")


async def _group_page(request: Request, group: str, template: str) -> Response:
    range_value = request.query_params.get("range") or DEFAULT_RANGE
    since = filters.range_start(range_value)
    async with request.app.state.pool.connection() as conn:
        rows = await summaries.list_groups(conn, group, since, None)
    return render(
        request,
        template,
        rows=rows,
        group=group,
        ranges=filters.RANGES,
        range_value=range_value,
    )
