"""Sessions: one row per session, and one page per session with its path tree."""

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from app.store import queries, summaries
from app.web import filters, formatting
from app.web.auth import require_sign_in
from app.web.templating import render

router = APIRouter(dependencies=[Depends(require_sign_in)])

DEFAULT_RANGE = "24h"


@dataclass(slots=True)
class PathNode:
    """One segment of Helicone-Session-Path, with the exchanges recorded at it."""

    name: str
    path: str
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    children: dict[str, "PathNode"] = field(default_factory=dict)


@router.get("/sessions")
async def session_list(request: Request) -> Response:
    range_value = request.query_params.get("range") or DEFAULT_RANGE
    since = filters.range_start(range_value)
    async with request.app.state.pool.connection() as conn:
        rows = await summaries.list_sessions(conn, since)
    return render(
        request,
        "sessions.html",
        rows=rows,
        ranges=filters.RANGES,
        range_value=range_value,
    )


@router.get("/sessions/{session_id:path}")
async def session_page(request: Request, session_id: str) -> Response:
    async with request.app.state.pool.connection() as conn:
        rows = await queries.list_session_exchanges(conn, session_id)
    if not rows:
        raise HTTPException(404, f"no exchange belongs to session {session_id!r}")

    for row in rows:
        row["display"] = formatting.display_row(row)
    return render(
        request,
        "session.html",
        session_id=session_id,
        rows=rows,
        tree=path_tree(rows),
        truncated=len(rows) == queries.SESSION_EXCHANGE_LIMIT,
        display_fields=formatting.DISPLAY_FIELDS,
    )


def path_tree(rows: list[dict[str, Any]]) -> PathNode:
    """Return the session_path tree of rows, with path-less exchanges at the root."""
    root = PathNode("/", "/")
    for row in rows:
        node = root
        for segment in (row.get("session_path") or "").strip("/").split("/"):
            if not segment:
                continue
            path = node.path.rstrip("/") + "/" + segment
            node = node.children.setdefault(segment, PathNode(segment, path))
        node.exchanges.append(row)
    return root
