"""Live mode: new exchanges pushed to the list as server-sent events."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse

from app.store import queries
from app.web import filters, formatting
from app.web.auth import require_sign_in
from app.web.pool import DatabaseUnavailableError

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", dependencies=[Depends(require_sign_in)])

POLL_INTERVAL_S = 1.0
# A comment line this often keeps idle connections open through proxies.
HEARTBEAT_S = 15.0

# How far back each poll rereads for batches that committed late, and the rows
# read per query. A recorder transaction lasting longer than LOOKBACK can still
# be missed.
LOOKBACK = timedelta(seconds=10)
POLL_ROWS = 500

# Position before every exchange, for a table that is still empty. Not
# datetime.min, because the lookback is subtracted from it.
BEGINNING = (datetime(1970, 1, 1, tzinfo=UTC), UUID(int=0))


@router.get("/exchanges/live")
async def live_exchanges(request: Request) -> StreamingResponse:
    where = filters.exchange_filter(request.query_params)
    start = _position(
        request.headers.get("last-event-id") or request.query_params.get("after")
    )
    if start is None:
        # Looked up before the stream starts, so a missing schema or database
        # returns its usual 503 response instead of an empty stream.
        async with request.app.state.pool.connection() as conn:
            start = await queries.latest_recorded(conn) or BEGINNING
    events = _events(request, where, start)
    # X-Accel-Buffering stops nginx from holding events back in its buffer.
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def encode_position(recorded_at: datetime, ident: UUID) -> str:
    return queries.Cursor(recorded_at, ident).encode()


def _position(token: str | None) -> tuple[datetime, UUID] | None:
    if not token:
        return None
    try:
        cursor = queries.Cursor.decode(token)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return cursor.started_at, cursor.id


class Follower:
    """The live feed's position, and the recent exchanges it already sent.

    recorded_at is the recorder's transaction time, so a batch that commits
    late can appear behind rows already sent. Each poll therefore rereads the
    last LOOKBACK and skips the ids it has sent.
    """

    def __init__(self, start: tuple[datetime, UUID]) -> None:
        self.position = start
        self.sent: dict[UUID, datetime] = {}
        self.seeded = False

    def window_start(self) -> tuple[datetime, UUID]:
        return (self.position[0] - LOOKBACK, UUID(int=0))

    def take_new(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the rows not sent yet and remember them."""
        fresh = []
        for row in rows:
            key = (row["recorded_at"], row["id"])
            # The first poll only learns what the page already showed.
            already_shown = not self.seeded and key <= self.position
            if row["id"] not in self.sent and not already_shown:
                fresh.append(row)
            self.sent[row["id"]] = row["recorded_at"]
            self.position = max(self.position, key)
        self.seeded = True

        cutoff = self.position[0] - LOOKBACK
        self.sent = {ident: at for ident, at in self.sent.items() if at >= cutoff}
        return fresh


async def _poll(
    conn: queries.Connection, where: queries.ExchangeFilter, follower: Follower
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = follower.window_start()
    while True:
        batch = await queries.list_recorded_after(conn, where, after, POLL_ROWS)
        rows.extend(batch)
        if len(batch) < POLL_ROWS:
            return rows
        after = (batch[-1]["recorded_at"], batch[-1]["id"])


async def _events(
    request: Request, where: queries.ExchangeFilter, start: tuple[datetime, UUID]
) -> AsyncIterator[str]:
    pool = request.app.state.pool
    follower = Follower(start)
    idle_s = 0.0
    failing = False
    # retry sets how long EventSource waits before reconnecting, in ms.
    yield "retry: 3000\n\n"

    while not await request.is_disconnected():
        try:
            async with pool.connection() as conn:
                rows = follower.take_new(await _poll(conn, where, follower))
            failing = False
        except (queries.SchemaMissingError, DatabaseUnavailableError) as exc:
            # Logged once per outage, not once per poll.
            if not failing:
                logger.warning("live mode query failed error=%s", exc)
            failing = True
            rows = []

        for row in rows:
            # The feed's position, not the row's, because a late row is older.
            yield _event(row, encode_position(*follower.position))
        idle_s = 0.0 if rows else idle_s + POLL_INTERVAL_S
        if idle_s >= HEARTBEAT_S:
            idle_s = 0.0
            yield ": heartbeat\n\n"
        await asyncio.sleep(POLL_INTERVAL_S)


def _event(row: dict, event_id: str) -> str:
    row["display"] = formatting.display_row(row)
    data = json.dumps(jsonable_encoder(row), separators=(",", ":"))
    return f"event: exchange\nid: {event_id}\ndata: {data}\n\n"
