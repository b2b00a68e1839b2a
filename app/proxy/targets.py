"""Target resolution: the upstream origin of a request, and the allow-list.

Only the origin of Helicone-Target-URL counts; the request's own path and query
are appended unchanged. An origin must be the configured upstream or one of
LLMTAP_ALLOWED_TARGETS, so the proxy never relays to arbitrary hosts.
"""

from urllib.parse import urlsplit

from app.proxy.errors import TargetInvalid, TargetMissing, TargetNotAllowed
from app.settings import Settings

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(url: str) -> str:
    """Return scheme://host[:port] in lower case, without a default port.

    Raises TargetInvalid when the value is not an absolute http(s) URL.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise TargetInvalid(_invalid_message(url)) from None

    scheme = parts.scheme.lower()
    # "ollama:11434" parses with the scheme "ollama": without "://" the value
    # is a host with no scheme, which is invalid rather than another scheme.
    if not scheme or "://" not in url:
        raise TargetInvalid(_invalid_message(url))
    if scheme not in DEFAULT_PORTS:
        raise TargetNotAllowed(
            f"Helicone-Target-URL {url!r} uses the scheme {scheme!r}; only "
            "http and https origins listed in LLMTAP_UPSTREAM_URL or "
            "LLMTAP_ALLOWED_TARGETS are allowed"
        )
    if not parts.hostname:
        raise TargetInvalid(_invalid_message(url))

    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _invalid_message(url: str) -> str:
    return (
        f"Helicone-Target-URL {url!r} is not a valid URL; send an absolute origin such "
        "as http://ollama:11434"
    )


class TargetPolicy:
    """Resolves a request's target origin and checks it against the allow-list."""

    def __init__(self, settings: Settings) -> None:
        self.default = (
            normalise_origin(settings.upstream_url) if settings.upstream_url else None
        )
        allowed = [item for item in settings.allowed_targets.split(",") if item.strip()]
        self.allowed = {normalise_origin(item) for item in allowed}
        if self.default:
            self.allowed.add(self.default)
        # Header values seen before, mapped to their origin; a client sends the
        # same few values again and again.
        self._cache: dict[bytes, str] = {}

    def resolve(self, header: bytes | None) -> str:
        """Return the origin for a Helicone-Target-URL value (None when absent)."""
        if not header:
            if self.default is None:
                raise TargetMissing(
                    "no upstream: the request has no Helicone-Target-URL header and "
                    "LLMTAP_UPSTREAM_URL is not set; set it to the model server, for "
                    "example http://ollama:11434"
                )
            return self.default

        origin = self._cache.get(header)
        if origin is not None:
            return origin

        value = header.decode("latin-1")
        origin = normalise_origin(value)
        if origin not in self.allowed:
            raise TargetNotAllowed(
                f"Helicone-Target-URL {value!r} names the origin {origin}, "
                "which is not "
                "allowed; add it to LLMTAP_ALLOWED_TARGETS (comma-separated origins) "
                "to let the proxy forward there"
            )
        if len(self._cache) < 256:
            self._cache[header] = origin
        return origin
