"""Export of the filtered exchange list as CSV or JSON Lines, streamed row by row."""

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse

from app.store import queries
from app.web import filters
from app.web.auth import require_sign_in

router = APIRouter(dependencies=[Depends(require_sign_in)])

# Rows are sent in batches of this many to keep the number of writes low.
BATCH_ROWS = 200


@router.get("/exchanges/export.csv")
async def export_csv(request: Request) -> StreamingResponse:
    where = filters.exchange_filter(request.query_params)
    await _check_database(request)
    return _download(_csv_lines(request, where), "csv", "text/csv; charset=utf-8")


@router.get("/exchanges/export.jsonl")
async def export_jsonl(request: Request) -> StreamingResponse:
    where = filters.exchange_filter(request.query_params)
    full = request.query_params.get("full") in ("1", "true", "on")
    await _check_database(request)
    return _download(_json_lines(request, where, full), "jsonl", "application/x-ndjson")


async def _check_database(request: Request) -> None:
    """Raise the usual errors for a missing schema or database before streaming.

    Once the download has started, its status can no longer change.
    """
    async with request.app.state.pool.connection() as conn:
        await queries.latest_recorded(conn)


def _download(
    body: AsyncIterator[str], extension: str, media_type: str
) -> StreamingResponse:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Content-Disposition": f'attachment; filename="exchanges-{stamp}.{extension}"'
    }
    return StreamingResponse(body, media_type=media_type, headers=headers)


async def _rows(
    request: Request, where: queries.ExchangeFilter, full: bool
) -> AsyncIterator[dict[str, Any]]:
    async with request.app.state.pool.connection() as conn:
        async for row in queries.stream_export(conn, where, full):
            yield row


async def _csv_lines(
    request: Request, where: queries.ExchangeFilter
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(queries.EXPORT_COLUMNS)
    count = 0
    async for row in _rows(request, where, full=False):
        writer.writerow(_csv_value(row[name]) for name in queries.EXPORT_COLUMNS)
        count += 1
        if count % BATCH_ROWS == 0:
            yield _drain(buffer)
    yield _drain(buffer)


async def _json_lines(
    request: Request, where: queries.ExchangeFilter, full: bool
) -> AsyncIterator[str]:
    lines: list[str] = []
    async for row in _rows(request, where, full):
        lines.append(json.dumps(jsonable_encoder(row), ensure_ascii=False) + "\n")
        if len(lines) == BATCH_ROWS:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


# Spreadsheets run a cell that starts with one of these as a formula, and
# prompts are untrusted text, so such cells get a leading apostrophe.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
