"""Read the proxy's count of exchanges dropped because its spool was full."""

import json
import logging
from typing import Any

from app.settings import Settings

logger = logging.getLogger(__name__)


def dropped_exchanges(settings: Settings) -> dict[str, Any] | None:
    """Return {"dropped": N, "since": iso8601} when N > 0, else None.

    The proxy writes DATA_DIR/spool/dropped.json; a missing or unreadable file
    means nothing was dropped.
    """
    path = settings.spool_dir / "dropped.json"
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("dropped-exchanges file unreadable path=%s error=%s", path, exc)
        return None

    if not isinstance(record, dict):
        return None
    dropped = record.get("dropped")
    if not isinstance(dropped, int) or dropped <= 0:
        return None
    return {"dropped": dropped, "since": str(record.get("since") or "")}
