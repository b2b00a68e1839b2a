"""Target origins: normalisation and the allow-list."""

import pytest

from app.proxy.errors import TargetInvalid, TargetMissing, TargetNotAllowed
from app.proxy.targets import TargetPolicy, normalise_origin
from app.settings import Settings


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://Ollama:11434/v1/chat", "http://ollama:11434"),
        ("HTTPS://api.example.com:443/", "https://api.example.com"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://mock:9000/base", "http://mock:9000"),
    ],
    ids=["path-dropped", "default-port", "ipv6", "base-path"],
)
def test_origin_normalised(url: str, origin: str):
    assert normalise_origin(url) == origin


def policy(**values: str) -> TargetPolicy:
    return TargetPolicy(Settings(upstream_url="http://ollama:11434", **values))


def test_default_target_used_when_header_missing():
    assert policy().resolve(None) == "http://ollama:11434"


def test_listed_target_allowed():
    allowed = policy(allowed_targets="https://api.openai.com, http://10.0.0.5:11434")

    assert allowed.resolve(b"https://API.openai.com/v1") == "https://api.openai.com"


@pytest.mark.parametrize(
    "header",
    [
        b"http://evil.example.com",
        b"http://169.254.169.254/latest/meta-data",
        b"http://ollama:11434@evil.example.com",
        b"file:///etc/passwd",
        b"gopher://ollama:11434",
    ],
    ids=["other-host", "metadata", "userinfo", "file", "gopher"],
)
def test_other_targets_rejected(header: bytes):
    with pytest.raises(TargetNotAllowed, match="LLMTAP_ALLOWED_TARGETS"):
        policy().resolve(header)


@pytest.mark.parametrize(
    "header", [b"http://", b"http://host:notaport"], ids=["no-host", "bad-port"]
)
def test_invalid_target_rejected(header: bytes):
    with pytest.raises(TargetInvalid):
        policy().resolve(header)


def test_missing_target_without_default():
    with pytest.raises(TargetMissing, match="LLMTAP_UPSTREAM_URL"):
        TargetPolicy(Settings(upstream_url="")).resolve(None)


@pytest.mark.parametrize(
    "header",
    [b"not a url", b"/v1", b"ollama:11434"],
    ids=["words", "path", "no-scheme"],
)
def test_header_without_scheme_invalid(header: bytes):
    with pytest.raises(TargetInvalid, match="absolute origin"):
        policy().resolve(header)
