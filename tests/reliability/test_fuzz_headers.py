"""Property tests: header metadata and target parsing under random bytes.

The header readers must never raise, because a request with odd headers still
has to be forwarded and recorded. The target parsers may raise only the
proxy's own errors, which become a 400 or 403 in the OpenAI shape.
"""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.proxy.errors import ProxyError, TargetInvalid, TargetNotAllowed
from app.proxy.metadata import read_metadata
from app.proxy.redaction import mask_query, redact_headers, secret_values
from app.proxy.targets import TargetPolicy, normalise_origin
from app.settings import Settings

FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Header names the readers look for, so random values reach every branch.
KNOWN_NAMES = [
    b"authorization",
    b"cookie",
    b"x-api-key",
    b"helicone-user-id",
    b"helicone-property-app",
    b"helicone-property-",
    b"helicone-session-id",
    b"helicone-session-path",
    b"helicone-session-name",
    b"helicone-omit-request",
    b"helicone-omit-response",
    b"x-openwebui-user-name",
    b"x-openwebui-user-id",
    b"x-openwebui-user-email",
    b"x-openwebui-chat-id",
    b"x-openwebui-user-jwt",
]
NAMES = st.sampled_from(KNOWN_NAMES) | st.binary(max_size=24)
PERCENT_TEXT = st.text(alphabet="%0123456789abcdefABCDEFGzé\x00 ", max_size=24)
VALUES = (
    st.binary(max_size=64)
    | PERCENT_TEXT.map(lambda text: text.encode("utf-8"))
    | st.sampled_from([b"Bearer ", b"Basic \xff\xfe", b"true", b"TRUE", b""])
)


@st.composite
def jwt_like(draw: st.DrawFn) -> bytes:
    """Build a value shaped like a JWT: three base64url parts of random bytes."""
    parts = [
        base64.urlsafe_b64encode(draw(st.binary(max_size=40))).rstrip(b"=")
        for _ in range(draw(st.integers(1, 4)))
    ]
    if draw(st.booleans()):
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}')
        parts[0] = header.rstrip(b"=")
    return b".".join(parts)


HEADERS = st.lists(
    st.tuples(NAMES, VALUES) | st.tuples(st.just(b"x-openwebui-user-jwt"), jwt_like()),
    max_size=12,
)
# PyJWT warns about HMAC keys under 32 bytes, so the signed case uses a long one.
SECRETS = st.sampled_from(["", "a-shared-secret-value-of-at-least-32-bytes"])


@FUZZ
@given(headers=HEADERS, secret=SECRETS)
def test_read_metadata_never_raises(
    headers: list[tuple[bytes, bytes]], secret: str
) -> None:
    meta = read_metadata(headers, secret)

    assert all(isinstance(key, str) for key in meta.properties)
    assert all(isinstance(value, str) for value in meta.properties.values())


@FUZZ
@given(headers=HEADERS)
def test_redact_headers_hides_credentials(headers: list[tuple[bytes, bytes]]) -> None:
    stored = redact_headers(headers)

    for name in ("authorization", "cookie", "x-api-key"):
        if name in stored:
            assert "<redacted sha256:" in stored[name]


@FUZZ
@given(headers=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40))))
def test_redact_text_headers_never_raises(headers: list[tuple[str, str]]) -> None:
    redact_headers(headers)


@FUZZ
@given(query=st.binary(max_size=120), headers=HEADERS)
def test_query_masking_never_raises(
    query: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    masked = mask_query(query)
    found = secret_values(headers, query)

    assert isinstance(masked, str)
    assert all(isinstance(value, str) for value in found)


ORIGIN_PARTS = st.sampled_from(
    ["http://", "https://", "HTTP://", "file://", "gopher://", "//", "", "http:"]
)
HOST_TEXT = st.text(alphabet="abc.:@[]/\\%?#0123456789 \t\x00é", max_size=30)


@FUZZ
@given(url=(ORIGIN_PARTS.flatmap(lambda p: HOST_TEXT.map(lambda h: p + h))))
def test_normalise_origin_raises_only_proxy_errors(url: str) -> None:
    try:
        origin = normalise_origin(url)
    except (TargetInvalid, TargetNotAllowed):
        return

    assert origin.startswith(("http://", "https://"))
    assert "@" not in origin


@FUZZ
@given(url=st.text(max_size=60))
def test_normalise_origin_random_text(url: str) -> None:
    try:
        normalise_origin(url)
    except ProxyError:
        pass


POLICY = TargetPolicy(
    Settings(
        upstream_url="http://127.0.0.1:11434",
        allowed_targets="https://api.example.test,http://[::1]:8000",
    )
)


@FUZZ
@given(
    value=st.binary(max_size=60)
    | (ORIGIN_PARTS.flatmap(lambda p: HOST_TEXT.map(lambda h: (p + h).encode())))
)
def test_policy_resolve_raises_only_proxy_errors(value: bytes) -> None:
    try:
        origin = POLICY.resolve(value)
    except ProxyError:
        return

    assert origin in POLICY.allowed
