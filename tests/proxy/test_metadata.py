"""Metadata read from request headers, and the redacted stored copy."""

import jwt
import pytest

from app.proxy.metadata import read_metadata
from app.proxy.redaction import (
    fingerprint,
    mask_query,
    redact_headers,
    secret_values,
)

SECRET = "a-shared-secret-of-enough-length-for-hs256"


def headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [
        (name.replace("_", "-").lower().encode(), value.encode("utf-8"))
        for name, value in values.items()
    ]


def test_helicone_headers_any_case():
    meta = read_metadata(
        [
            (b"helicone-user-id", b"alice"),
            (b"helicone-property-app", b"notes"),
            (b"helicone-property-team", b"caf%C3%A9"),
            (b"helicone-property-city", "Zürich".encode()),
            (b"helicone-session-id", b"s-1"),
            (b"helicone-session-path", b"/plan/step-1"),
            (b"helicone-session-name", b"Trip%20plan"),
        ],
        "",
    )

    assert meta.user_id == "alice"
    assert meta.user_source == "helicone"
    assert meta.properties == {"app": "notes", "team": "café", "city": "Zürich"}
    assert (meta.session_id, meta.session_path, meta.session_name) == (
        "s-1",
        "/plan/step-1",
        "Trip plan",
    )


def test_openwebui_headers_give_user_and_session():
    meta = read_metadata(
        headers(
            X_OpenWebUI_User_Name="Zo%C3%AB Example",
            X_OpenWebUI_User_Id="5f0c2f0e-0000-4000-8000-000000000001",
            X_OpenWebUI_User_Email="zoe@example.com",
            X_OpenWebUI_User_Role="admin",
            X_OpenWebUI_Chat_Id="chat-42",
        ),
        "",
    )

    assert meta.user_name == "Zoë Example"
    assert meta.user_id == "5f0c2f0e-0000-4000-8000-000000000001"
    assert meta.user_email == "zoe@example.com"
    assert meta.user_role == "admin"
    assert meta.user_source == "openwebui"
    assert meta.session_id == "chat-42"


def test_helicone_user_wins_over_openwebui():
    meta = read_metadata(
        headers(X_OpenWebUI_User_Id="owui-id", Helicone_User_Id="explicit"), ""
    )

    assert meta.user_id == "explicit"


def test_helicone_session_wins_over_chat_id():
    meta = read_metadata(
        headers(X_OpenWebUI_Chat_Id="chat", Helicone_Session_Id="session"), ""
    )

    assert meta.session_id == "session"


def openwebui_token(secret: str, **claims: object) -> str:
    payload = {"sub": "u-1", "name": "Zoë", "email": "z@example.com", "role": "user"}
    payload |= {"iss": "open-webui", **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def test_openwebui_jwt_verified():
    token = openwebui_token(SECRET)

    meta = read_metadata(headers(X_OpenWebUI_User_Jwt=token), SECRET)

    assert meta.user_source == "openwebui-jwt"
    assert (meta.user_id, meta.user_name, meta.user_email, meta.user_role) == (
        "u-1",
        "Zoë",
        "z@example.com",
        "user",
    )
    assert meta.notes == []


@pytest.mark.parametrize(
    ("secret", "token_secret", "expected_note"),
    [
        ("", SECRET, "LLMTAP_OPENWEBUI_JWT_SECRET is not set"),
        (
            SECRET,
            "another-secret-that-is-also-long-enough",
            "Signature verification failed",
        ),
    ],
    ids=["no-secret", "wrong-secret"],
)
def test_openwebui_jwt_unverified_noted(
    secret: str, token_secret: str, expected_note: str
):
    token = openwebui_token(token_secret)

    meta = read_metadata(headers(X_OpenWebUI_User_Jwt=token), secret)

    assert meta.user_source == "openwebui-jwt-unverified"
    assert meta.user_id == "u-1"
    assert any(expected_note in note for note in meta.notes)


def test_openwebui_jwt_expired_noted():
    token = openwebui_token(SECRET, exp=1)

    meta = read_metadata(headers(X_OpenWebUI_User_Jwt=token), SECRET)

    assert meta.user_source == "openwebui-jwt-unverified"
    assert any("expired" in note for note in meta.notes)


def test_omit_flags():
    meta = read_metadata(
        headers(Helicone_Omit_Request="true", Helicone_Omit_Response="TRUE"), ""
    )

    assert meta.omit_request is True
    assert meta.omit_response is True


def test_credentials_fingerprinted():
    stored = redact_headers(
        headers(
            Authorization="Bearer sk-test-PLACEHOLDER-1234567890abcdef",
            X_Api_Key="PLACEHOLDER-ANTHROPIC-KEY",
            Cookie="session=PLACEHOLDER-SESSION",
            Content_Type="application/json",
        )
    )

    assert stored["authorization"].startswith("Bearer <redacted sha256:")
    assert "PLACEHOLDER" not in stored["authorization"]
    assert "PLACEHOLDER" not in stored["x-api-key"]
    assert "PLACEHOLDER" not in stored["cookie"]
    assert stored["content-type"] == "application/json"


def test_fingerprint_is_stable_and_short():
    assert fingerprint("Bearer abc123456") == fingerprint("Bearer abc123456")
    assert len(fingerprint("x" * 500)) < 60


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"key=PLACEHOLDER&alt=sse", "key=***&alt=sse"),
        (b"api-version=2024-10-21", "api-version=2024-10-21"),
        (b"a=1&api_key=s3cret&token=t", "a=1&api_key=***&token=***"),
        (b"monkey=banana", "monkey=banana"),
    ],
    ids=["key", "api-version-kept", "several", "suffix-not-matched"],
)
def test_query_secrets_masked(query: bytes, expected: str):
    assert mask_query(query) == expected


def test_secret_values_cover_headers_and_query():
    found = secret_values(
        headers(
            Authorization="Bearer sk-test-PLACEHOLDER-1234", Cookie="sid=COOKIEVALUE1"
        ),
        b"key=PLACEHOLDER_GOOGLE_KEY",
    )

    assert "sk-test-PLACEHOLDER-1234" in found
    assert "COOKIEVALUE1" in found
    assert "PLACEHOLDER_GOOGLE_KEY" in found
