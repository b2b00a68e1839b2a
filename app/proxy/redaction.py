"""Credentials in an exchange: fingerprints, masked queries and scrubbed bodies.

The proxy scrubs every exchange before it reaches the spool, and the recorder
stores headers and queries in their redacted form. This module imports nothing
heavy because the proxy loads it on its forwarding path.
"""

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from app.proxy.exchange import Exchange

# Request and response headers whose values are credentials: only a short
# fingerprint of them is stored.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "set-cookie",
        "helicone-auth",
        "x-goog-api-key",
        "openai-organization",
        "x-openwebui-user-jwt",
    }
)
# Query parameters whose values are masked in the stored query and in logs.
SECRET_QUERY_PARAMETERS = re.compile(
    r"(?i)(^|&)((?:api[_-]?)?key|token|access_token|sig|signature|secret|password)=([^&]*)"
)
BEARER = re.compile(r"(?i)^(bearer|basic)\s+")
MIN_SECRET_LENGTH = 8
# Part of every fingerprint, so a value is never fingerprinted twice.
REDACTED_MARK = b"redacted sha256:"


def scrub_credentials(exchange: "Exchange") -> None:
    """Remove the request's credentials from an exchange before it is spooled.

    Credential headers become fingerprints, secret query values become ***, and
    each credential value is cut out of the request body and the response
    chunks, where an upstream may echo it. A value split across two chunks, or
    inside a compressed body, is not found.
    """
    secrets = [
        value.encode()
        for value in secret_values(exchange.request_headers, exchange.query)
    ]
    exchange.request_headers = [
        (name, _redacted(name.decode("latin-1").lower(), value))
        for name, value in exchange.request_headers
    ]
    exchange.response_headers = [
        (name, _redacted(name, value.encode("latin-1")).decode("latin-1"))
        for name, value in exchange.response_headers
    ]
    if exchange.query:
        exchange.query = mask_query(exchange.query).encode("latin-1")
    for secret in secrets:
        exchange.request_body = exchange.request_body.replace(secret, b"***")
        exchange.chunks = [
            (at, data.replace(secret, b"***")) for at, data in exchange.chunks
        ]


def _redacted(name: str, value: bytes) -> bytes:
    if name not in CREDENTIAL_HEADERS or REDACTED_MARK in value:
        return value
    return fingerprint(header_text(value)).encode()


def redact_headers(
    headers: list[tuple[bytes, bytes]] | list[tuple[str, str]],
) -> dict[str, str]:
    """Return headers as a dict for storage, credentials reduced to a fingerprint.

    Repeated headers are joined with ", " as HTTP allows.
    """
    stored: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = (
            raw_name.decode("latin-1").lower()
            if isinstance(raw_name, bytes)
            else raw_name.lower()
        )
        value = header_text(raw_value) if isinstance(raw_value, bytes) else raw_value
        if name in CREDENTIAL_HEADERS and REDACTED_MARK.decode() not in value:
            value = fingerprint(value)
        stored[name] = f"{stored[name]}, {value}" if name in stored else value
    return stored


def fingerprint(secret: str) -> str:
    """Return a short, non-reversible label for a credential: scheme and hash prefix."""
    scheme = ""
    match = BEARER.match(secret)
    if match:
        scheme = match.group(1).capitalize() + " "
        secret = secret[match.end() :]
    digest = hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()[:12]
    return f"{scheme}<{REDACTED_MARK.decode()}{digest} len={len(secret)}>"


def mask_query(query: bytes) -> str:
    """Return the query string with secret-looking parameter values replaced by ***."""
    text = query.decode("latin-1")
    return SECRET_QUERY_PARAMETERS.sub(lambda match: f"{match[1]}{match[2]}=***", text)


def secret_values(headers: list[tuple[bytes, bytes]], query: bytes) -> list[str]:
    """Return the credentials this request carried, to scrub wherever they recur.

    An upstream may echo a key back (an error that quotes the request, say), so
    the stored bodies are searched for these values too. Values shorter than
    MIN_SECRET_LENGTH are skipped because they would match ordinary text.
    """
    found: list[str] = []
    for raw_name, raw_value in headers:
        if raw_name.decode("latin-1").lower() not in CREDENTIAL_HEADERS:
            continue
        value = header_text(raw_value)
        found.append(value)
        found.append(BEARER.sub("", value))
        found.extend(part.split("=", 1)[-1].strip() for part in value.split(";"))
    for match in SECRET_QUERY_PARAMETERS.finditer(query.decode("latin-1")):
        found.append(match[3])
        found.append(unquote(match[3]))
    unique = {value for value in found if len(value) >= MIN_SECRET_LENGTH}
    return sorted(unique, key=len, reverse=True)


def header_text(value: bytes) -> str:
    """Decode a header value for storage; NUL, which PostgreSQL rejects, is replaced."""
    return value.decode("utf-8", "replace").replace("\x00", "\ufffd")
