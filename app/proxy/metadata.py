"""Metadata a request carries in its headers, and their redacted stored copy.

Helicone's headers (Helicone-User-Id, Helicone-Property-*, Helicone-Session-*,
Helicone-Omit-*) and Open WebUI's forwarded user headers (X-OpenWebUI-User-*,
X-OpenWebUI-Chat-Id, or one signed X-OpenWebUI-User-Jwt) give each exchange its
user, session and properties. Header names are matched case-insensitively.
"""

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

import jwt
from jwt.warnings import InsecureKeyLengthWarning

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


@dataclass(slots=True)
class Metadata:
    user_id: str | None = None
    user_name: str | None = None
    user_email: str | None = None
    user_role: str | None = None
    user_source: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    omit_request: bool = False
    omit_response: bool = False
    notes: list[str] = field(default_factory=list)


def read_metadata(headers: list[tuple[bytes, bytes]], jwt_secret: str) -> Metadata:
    """Collect the user, session, properties and omit flags from request headers."""
    values = {name.decode("latin-1"): _text(value) for name, value in headers}
    meta = Metadata()

    for name, value in values.items():
        if name.startswith("helicone-property-") and len(name) > len(
            "helicone-property-"
        ):
            meta.properties[name[len("helicone-property-") :]] = _unquote(value)

    _read_openwebui(values, meta, jwt_secret)
    if "helicone-user-id" in values:
        meta.user_id = _unquote(values["helicone-user-id"])
        meta.user_source = "helicone"

    meta.session_id = values.get("helicone-session-id") or values.get(
        "x-openwebui-chat-id"
    )
    meta.session_path = _optional(values.get("helicone-session-path"))
    meta.session_name = _optional(_unquote(values.get("helicone-session-name", "")))
    meta.omit_request = values.get("helicone-omit-request", "").lower() == "true"
    meta.omit_response = values.get("helicone-omit-response", "").lower() == "true"
    return meta


def _read_openwebui(values: dict[str, str], meta: Metadata, jwt_secret: str) -> None:
    token = values.get("x-openwebui-user-jwt")
    if token:
        _read_openwebui_jwt(token, meta, jwt_secret)
        return
    if not any(name.startswith("x-openwebui-user-") for name in values):
        return

    # Open WebUI URL-quotes the name (keeping spaces) and sends the rest raw.
    meta.user_name = _optional(_unquote(values.get("x-openwebui-user-name", "")))
    meta.user_id = _optional(values.get("x-openwebui-user-id"))
    meta.user_email = _optional(values.get("x-openwebui-user-email"))
    meta.user_role = _optional(values.get("x-openwebui-user-role"))
    meta.user_source = "openwebui"


def _read_openwebui_jwt(token: str, meta: Metadata, secret: str) -> None:
    if not secret:
        claims = _unverified_claims(token)
        meta.notes.append(
            "user from X-OpenWebUI-User-Jwt NOT verified: LLMTAP_OPENWEBUI_JWT_SECRET "
            "is not set"
        )
        meta.user_source = "openwebui-jwt-unverified"
    else:
        try:
            with warnings.catch_warnings():
                # Open WebUI's secret is the operator's choice, short or not.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims = jwt.decode(
                    token, secret, algorithms=["HS256"], issuer="open-webui"
                )
            meta.user_source = "openwebui-jwt"
        except jwt.PyJWTError as error:
            claims = _unverified_claims(token)
            meta.notes.append(f"user from X-OpenWebUI-User-Jwt NOT verified: {error}")
            meta.user_source = "openwebui-jwt-unverified"

    meta.user_id = _claim(claims, "sub")
    meta.user_name = _claim(claims, "name")
    meta.user_email = _claim(claims, "email")
    meta.user_role = _claim(claims, "role")


def _unverified_claims(token: str) -> dict[str, object]:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _claim(claims: dict[str, object], name: str) -> str | None:
    value = claims.get(name)
    return str(value) if value is not None and value != "" else None


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
    return fingerprint(_text(value)).encode()


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
        value = _text(raw_value) if isinstance(raw_value, bytes) else raw_value
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
        value = _text(raw_value)
        found.append(value)
        found.append(BEARER.sub("", value))
        found.extend(part.split("=", 1)[-1].strip() for part in value.split(";"))
    for match in SECRET_QUERY_PARAMETERS.finditer(query.decode("latin-1")):
        found.append(match[3])
        found.append(unquote(match[3]))
    unique = {value for value in found if len(value) >= MIN_SECRET_LENGTH}
    return sorted(unique, key=len, reverse=True)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _unquote(value: str) -> str:
    return unquote(value, errors="replace") if "%" in value else value


def _optional(value: str | None) -> str | None:
    return value.strip() or None if value else None
