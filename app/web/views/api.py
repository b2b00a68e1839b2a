"""The dashboard's JSON API; it accepts the same session cookie as the pages."""

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from app.store import queries
from app.web.auth import require_sign_in
from app.web.views.exchange import parse_id
from app.web.views.exchanges import load_page

router = APIRouter(prefix="/api", dependencies=[Depends(require_sign_in)])


@router.get("/exchanges")
async def exchange_list(request: Request) -> JSONResponse:
    page = await load_page(request)
    return JSONResponse(jsonable_encoder(page))


@router.get("/exchanges/{exchange_id}")
async def exchange_detail(request: Request, exchange_id: str) -> JSONResponse:
    ident = parse_id(exchange_id)
    async with request.app.state.pool.connection() as conn:
        row: dict[str, Any] | None = await queries.get_exchange(conn, ident)
    if row is None:
        raise HTTPException(404, f"no exchange has id {exchange_id}")
    return JSONResponse(jsonable_encoder(row))
