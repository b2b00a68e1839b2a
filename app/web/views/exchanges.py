"""The exchange list: newest first, filtered, paged by keyset."""

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from app.store import queries
from app.web import filters, formatting
from app.web.auth import require_sign_in
from app.web.templating import render

router = APIRouter(dependencies=[Depends(require_sign_in)])

PAGE_SIZE = 50


@router.get("/exchanges")
async def exchange_list(request: Request) -> Response:
    page = await load_page(request)
    return render(
        request,
        "exchanges.html",
        rows=page["rows"],
        next_cursor=page["next_cursor"],
        params=request.query_params,
        filter_query=filters.filter_query(request.query_params),
        ranges=filters.RANGES,
        outcomes=filters.OUTCOMES,
        first_page=not request.query_params.get("before"),
        display_fields=formatting.DISPLAY_FIELDS,
    )


async def load_page(request: Request) -> dict[str, Any]:
    """Read one page of the list that the request's query parameters describe."""
    params = request.query_params
    where = filters.exchange_filter(params)
    before = _cursor(params.get("before"))
    limit = _limit(params.get("limit"))

    async with request.app.state.pool.connection() as conn:
        rows = await queries.list_exchanges(conn, where, before, limit)

    for row in rows:
        row["display"] = formatting.display_row(row)
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = queries.Cursor(last["started_at"], last["id"]).encode()
    return {"rows": rows, "next_cursor": next_cursor}


def _cursor(token: str | None) -> queries.Cursor | None:
    if not token:
        return None
    try:
        return queries.Cursor.decode(token)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def _limit(value: str | None) -> int:
    if not value:
        return PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= queries.MAX_PAGE_SIZE:
        raise HTTPException(
            422, f"invalid limit={value!r}: expected 1 to {queries.MAX_PAGE_SIZE}"
        )
    return int(value)
