"""Display formats shared by the templates and the JSON list that live mode reads."""

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# Fields of an exchange summary as the list shows them; live mode fills rows
# from the same strings, so both renderings stay identical.
DISPLAY_FIELDS = (
    "time",
    "user",
    "model",
    "path",
    "status",
    "tokens",
    "latency",
    "ttft",
    "cost",
    "prompt",
    "response",
)


def format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_ms(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{value:.0f} ms"


def format_cost(value: Decimal | float | None) -> str:
    if value is None:
        return ""
    amount = float(value)
    if amount == 0:
        return "$0"
    if amount < 0.01:
        return f"${amount:.6f}"
    return f"${amount:.4f}"


def format_count(value: int | float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}"


def format_tokens(prompt: int | None, completion: int | None) -> str:
    if prompt is None and completion is None:
        return ""
    return f"{format_count(prompt) or '?'} / {format_count(completion) or '?'}"


def format_status(row: dict[str, Any]) -> str:
    status = row.get("http_status")
    outcome = row.get("outcome") or ""
    if outcome == "success":
        return str(status or "")
    return f"{status or '-'} {outcome}"


def format_user(row: dict[str, Any]) -> str:
    return row.get("user_name") or row.get("user_id") or ""


def pretty_json(value: Any) -> str:
    """Return value as indented JSON; a stored string is shown as it is."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def display_row(row: dict[str, Any]) -> dict[str, str]:
    """Return the formatted cells of one exchange summary, keyed by DISPLAY_FIELDS."""
    return {
        "time": format_time(row.get("started_at")),
        "user": format_user(row),
        "model": row.get("model") or "",
        "path": row.get("path") or "",
        "status": format_status(row),
        "tokens": format_tokens(row.get("prompt_tokens"), row.get("completion_tokens")),
        "latency": format_ms(row.get("latency_ms")),
        "ttft": format_ms(row.get("ttft_ms")),
        "cost": format_cost(row.get("cost_usd")),
        "prompt": row.get("prompt_snippet") or "",
        "response": row.get("response_snippet") or "",
    }
