"""Metadata a request carries in its headers.

Helicone's headers (Helicone-User-Id, Helicone-Property-*, Helicone-Session-*,
Helicone-Omit-*) and Open WebUI's forwarded user headers (X-OpenWebUI-User-*,
X-OpenWebUI-Chat-Id, or one signed X-OpenWebUI-User-Jwt) give each exchange its
user, session and properties. Header names are matched case-insensitively.
"""

import warnings
from dataclasses import dataclass, field
from urllib.parse import unquote

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from app.proxy.redaction import header_text


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
    values = {name.decode("latin-1"): header_text(value) for name, value in headers}
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


def _unquote(value: str) -> str:
    return unquote(value, errors="replace") if "%" in value else value


def _optional(value: str | None) -> str | None:
    return value.strip() or None if value else None
