"""The page of one exchange: conversation, bodies, headers, metadata and timeline."""

from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from app.store import queries
from app.web import conversation, curl, filters, timeline
from app.web.auth import require_sign_in
from app.web.templating import render

router = APIRouter(dependencies=[Depends(require_sign_in)])


def parse_id(value: str) -> UUID:
    """Return the exchange id in value; raise 404 when it is not a UUID."""
    try:
        return UUID(value)
    except ValueError:
        raise HTTPException(
            404, f"no exchange has id {value!r}: ids are UUIDs"
        ) from None


@router.get("/exchanges/{exchange_id}")
async def exchange_page(request: Request, exchange_id: str) -> Response:
    ident = parse_id(exchange_id)
    # The list's filters travel along, so next and previous stay inside them.
    where = filters.exchange_filter(request.query_params)
    async with request.app.state.pool.connection() as conn:
        row = await queries.get_exchange(conn, ident)
        if row is None:
            raise HTTPException(404, f"no exchange has id {exchange_id}")
        neighbours = await queries.get_neighbours(
            conn, row["started_at"], row["id"], where
        )

    return render(
        request,
        "exchange.html",
        exchange=row,
        neighbours=neighbours,
        filter_query=filters.filter_query(request.query_params),
        messages=conversation.conversation(row),
        timeline=timeline.layout(row.get("timeline")),
        curl=curl.curl_command(row),
    )
