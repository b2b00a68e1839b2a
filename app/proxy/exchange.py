"""The raw facts of one exchange as the proxy saw them on the wire.

The hot path only fills this object; parsing the bodies and building the stored
row happen later, in the recorder.
"""

import marshal
from dataclasses import dataclass, field, fields

# End reasons of an exchange as the proxy saw them. The recorder combines them
# with the parsed response into the stored outcome.
END_COMPLETE = "complete"
END_UPSTREAM_CLOSED = "upstream_closed"
END_UPSTREAM_RESET = "upstream_reset"
END_IDLE_TIMEOUT = "idle_timeout"
END_CLIENT_DISCONNECTED = "client_disconnected"
END_PROXY_ERROR = "proxy_error"


@dataclass(slots=True)
class Exchange:
    id: str
    started_at: float  # Unix time when the request head arrived
    method: str
    path: str
    query: bytes
    client: str | None
    request_headers: list[tuple[bytes, bytes]]
    request_body: bytes = b""
    target: str | None = None
    upstream_status: int | None = None
    status_sent: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    chunks_truncated: bool = False
    response_bytes: int = 0
    end: str = END_COMPLETE
    error_type: str | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    injected_usage: bool = False


FIELD_NAMES = tuple(item.name for item in fields(Exchange))


def encode_exchanges(exchanges: list[Exchange]) -> bytes:
    """Serialise exchanges for the spool with marshal: data only, and fast."""
    return marshal.dumps(
        [[getattr(exchange, name) for name in FIELD_NAMES] for exchange in exchanges]
    )


def decode_exchanges(payload: bytes) -> list[Exchange]:
    """Rebuild the exchanges of one spool segment."""
    exchanges = []
    for values in marshal.loads(payload):
        exchange = Exchange(**dict(zip(FIELD_NAMES, values, strict=True)))
        # marshal returns lists where the proxy kept tuples.
        exchange.request_headers = [
            (name, value) for name, value in exchange.request_headers
        ]
        exchange.response_headers = [
            (name, value) for name, value in exchange.response_headers
        ]
        exchange.chunks = [(at, data) for at, data in exchange.chunks]
        exchanges.append(exchange)
    return exchanges
