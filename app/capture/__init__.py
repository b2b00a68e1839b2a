"""Parsers that turn a captured exchange into the values stored for it.

Pure functions without I/O: the proxy records a Captured and calls
parse_exchange and redact_request_body off the request path.
"""

from app.capture.exchange import parse_exchange
from app.capture.model import Captured, Parsed
from app.capture.redact import redact_request_body

__all__ = ["Captured", "Parsed", "parse_exchange", "redact_request_body"]
