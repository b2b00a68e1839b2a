"""Read the exchange list's filters from query parameters.

The same parameter names serve the pages, the JSON API, live mode and export, so
a filtered page's query string can be handed to any of them unchanged.
"""

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from fastapi import HTTPException
from starlette.datastructures import QueryParams

from app.store.queries import ExchangeFilter

# Time ranges offered by the range selector, as (parameter value, label, length).
RANGES = (
    ("1h", "last hour", timedelta(hours=1)),
    ("24h", "last 24 hours", timedelta(hours=24)),
    ("7d", "last 7 days", timedelta(days=7)),
    ("30d", "last 30 days", timedelta(days=30)),
    ("all", "all time", None),
)
RANGE_LENGTHS = {value: length for value, _, length in RANGES}

FILTER_PARAMS = (
    "range",
    "since",
    "until",
    "model",
    "user",
    "session",
    "outcome",
    "errors",
    "path",
    "prop",
    "value",
    "q",
)

OUTCOMES = (
    "success",
    "upstream_http_error",
    "in_stream_error",
    "upstream_incomplete",
    "upstream_timeout",
    "client_disconnected",
    "proxy_error",
)


def parse_time(name: str, value: str | None) -> datetime | None:
    """Parse an ISO 8601 time; one without a zone is taken as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(
            422,
            f"invalid {name}={value!r}: expected an ISO 8601 time such as "
            "2026-01-31T12:00",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def exchange_filter(params: QueryParams, default_range: str = "all") -> ExchangeFilter:
    """Return the filter that the query parameters describe."""
    since = parse_time("since", params.get("since"))
    until = parse_time("until", params.get("until"))
    since = since or range_start(params.get("range") or default_range)

    outcome = params.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        raise HTTPException(
            422, f"invalid outcome={outcome!r}: expected one of {', '.join(OUTCOMES)}"
        )

    return ExchangeFilter(
        since=since,
        until=until,
        model=params.get("model") or None,
        user_id=params.get("user") or None,
        session_id=params.get("session") or None,
        outcome=outcome,
        errors_only=params.get("errors") in ("1", "true", "on"),
        path=params.get("path") or None,
        property_key=params.get("prop") or None,
        property_value=params.get("value") or None,
        search=(params.get("q") or "").strip() or None,
    )


def range_start(range_value: str) -> datetime | None:
    if range_value not in RANGE_LENGTHS:
        choices = ", ".join(RANGE_LENGTHS)
        raise HTTPException(
            422, f"invalid range={range_value!r}: expected one of {choices}"
        )
    length = RANGE_LENGTHS[range_value]
    return None if length is None else datetime.now(UTC) - length


def filter_query(params: QueryParams, **changes: str | None) -> str:
    """Return the filter parameters of params, with changes, as a query string."""
    values = {name: params.get(name) for name in FILTER_PARAMS}
    values.update(changes)
    return urlencode({name: value for name, value in values.items() if value})
