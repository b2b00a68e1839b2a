"""Errors the proxy itself returns, in the OpenAI error shape.

Upstream errors are never wrapped: they pass through with their own status and
body. Only failures of the proxy, or of reaching the upstream before any
response started, produce one of these. Each class carries its HTTP status
and a stable `type` value that the README lists; app/proxy/upstream.py maps
the transport's exceptions to them in one place.
"""

import json


class ProxyError(Exception):
    status = 500
    type = "proxy_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "code": self.type}
        return json.dumps({"error": error}).encode()


class TargetMissing(ProxyError):
    status = 400
    type = "target_missing"


class TargetInvalid(ProxyError):
    status = 400
    type = "target_invalid"


class TargetNotAllowed(ProxyError):
    status = 403
    type = "target_not_allowed"


class RequestTooLarge(ProxyError):
    status = 413
    type = "request_too_large"


class UpstreamUnreachable(ProxyError):
    status = 502
    type = "upstream_unreachable"


class UpstreamTimeout(ProxyError):
    status = 504
    type = "upstream_timeout"
