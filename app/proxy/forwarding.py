"""Header filtering in both directions across the proxy.

Hop-by-hop headers (RFC 9110, section 7.6.1) belong to one connection and never
cross; Helicone-* headers are instructions to the proxy and never reach the
upstream. Host is replaced by the target's (app/proxy/upstream.py), because
Ollama rejects Host values it does not recognise.
"""

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Dropped towards the upstream besides the hop-by-hop set: the proxy sets Host
# and Content-Length for the body it actually sends.
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}
# Headers that describe the event stream and that intermediaries need to see,
# added to text/event-stream responses when the upstream did not send them.
STREAM_HEADERS = ((b"x-accel-buffering", b"no"), (b"cache-control", b"no-cache"))


def request_headers_for_upstream(
    headers: list[tuple[bytes, bytes]],
) -> list[tuple[bytes, bytes]]:
    named_in_connection = _connection_tokens(headers)
    return [
        (name, value)
        for name, value in headers
        if name not in NOT_FORWARDED
        and not name.startswith(b"helicone-")
        and name not in named_in_connection
    ]


def response_headers_for_client(
    headers: list[tuple[bytes, bytes]], exchange_id: str
) -> list[tuple[bytes, bytes]]:
    named_in_connection = _connection_tokens(headers)
    forwarded: list[tuple[bytes, bytes]] = []
    is_stream = False
    present: set[bytes] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in named_in_connection:
            continue
        if lowered == b"content-type" and value.startswith(b"text/event-stream"):
            is_stream = True
        present.add(lowered)
        forwarded.append((lowered, value))

    if is_stream:
        forwarded.extend(item for item in STREAM_HEADERS if item[0] not in present)
    forwarded.append((b"helicone-id", exchange_id.encode()))
    return forwarded


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    return tokens
