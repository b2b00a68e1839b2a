"""Requests to the upstream, on httpcore's connection pool.

The proxy uses httpcore, the transport under httpx, directly: httpx's client
layer would add default headers, keep a cookie jar shared by every client of
the proxy, and re-encode the request target, none of which a pass-through
proxy wants. The target is sent exactly as the client wrote it. The pool runs
on the network backend in app/proxy/network.py, which is cheaper per request
than httpcore's anyio streams.
"""

from functools import lru_cache
from urllib.parse import urlsplit

import httpcore

from app.proxy import errors
from app.proxy.network import TransportBackend
from app.settings import Settings

# Idle connections kept per pool; a home lab talks to one or two upstreams.
MAX_KEEPALIVE = 100
# Seconds an idle upstream connection stays open for reuse.
KEEPALIVE_EXPIRY_S = 30.0


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = httpcore.AsyncConnectionPool(
            max_connections=None,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
            network_backend=TransportBackend(),
        )

    async def send(
        self,
        origin: str,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[httpcore.Request, httpcore.Response]:
        """Send a request and return it with the response, whose body is unread.

        Raises a ProxyError when no response headers arrive.
        """
        scheme, host, port, host_header = split_origin(origin)
        headers = [(b"host", host_header), *headers]
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        request = httpcore.Request(
            method.encode(),
            httpcore.URL(scheme=scheme, host=host, port=port, target=target),
            headers=headers,
            content=body or None,
            extensions={"timeout": self.timeouts()},
        )
        try:
            response = await self.pool.handle_async_request(request)
        except httpcore.TimeoutException as error:
            raise self.timeout_error(error, origin) from None
        except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as error:
            raise errors.UpstreamUnreachable(
                f"could not reach the upstream {origin}: "
                f"{error or type(error).__name__}; "
                "check that it is running and that LLMTAP_UPSTREAM_URL or "
                "Helicone-Target-URL names it"
            ) from None
        # httpcore reads the read timeout when the body iteration starts, so this
        # switches from the header timeout to the idle timeout between chunks.
        request.extensions["timeout"]["read"] = self.settings.upstream_idle_timeout_s
        return request, response

    def timeouts(self) -> dict[str, float]:
        settings = self.settings
        return {
            "connect": settings.upstream_connect_timeout_s,
            "read": settings.upstream_header_timeout_s,
            "write": settings.upstream_header_timeout_s,
            "pool": settings.upstream_connect_timeout_s,
        }

    def timeout_error(self, error: Exception, origin: str) -> errors.UpstreamTimeout:
        if isinstance(error, httpcore.ConnectTimeout | httpcore.PoolTimeout):
            return errors.UpstreamTimeout(
                f"connecting to the upstream {origin} timed out after "
                f"{self.settings.upstream_connect_timeout_s:g}s; check that it is "
                "running and reachable from the appliance"
            )
        return errors.UpstreamTimeout(
            "upstream did not respond within "
            f"{self.settings.upstream_header_timeout_s:g}s; "
            "raise LLMTAP_UPSTREAM_HEADER_TIMEOUT_S if the model needs longer to load"
        )

    async def close(self) -> None:
        await self.pool.aclose()


@lru_cache(maxsize=256)
def split_origin(origin: str) -> tuple[bytes, bytes, int | None, bytes]:
    """Return scheme, host, port and the Host header value of a normalised origin."""
    parts = urlsplit(origin)
    host = (parts.hostname or "").encode("idna")
    host_header = parts.netloc.encode("idna")
    return parts.scheme.encode(), host, parts.port, host_header
