"""Dashboard sign-in: one shared password, a signed session cookie and CSRF tokens.

The session cookie is signed by Starlette's SessionMiddleware with the "session"
secret. Every form carries the session's CSRF token, and failed sign-ins are
counted per client address so that guessing the password is slow.
"""

import hmac
import logging
import secrets
import time
from collections import defaultdict, deque

from fastapi import Request

from app.credentials import read_secret
from app.settings import Settings

logger = logging.getLogger(__name__)

SESSION_KEY = "signed_in"
CSRF_KEY = "csrf"

# Five wrong passwords in five minutes block that address for the rest of the
# window: enough for typos, far too few for guessing.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 300.0
MAX_TRACKED_ADDRESSES = 10_000


class SignInRequiredError(Exception):
    """The request needs a signed-in session and has none."""


class CsrfError(Exception):
    """A form arrived without the session's CSRF token."""


def auth_enabled(settings: Settings) -> bool:
    return settings.dashboard_auth == "on"


def is_signed_in(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return not auth_enabled(settings) or request.session.get(SESSION_KEY) is True


async def require_sign_in(request: Request) -> None:
    """FastAPI dependency that rejects requests of visitors who have not signed in."""
    if not is_signed_in(request):
        raise SignInRequiredError()


def csrf_token(request: Request) -> str:
    """Return the session's CSRF token, creating it on first use."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise CsrfError unless submitted equals the session's CSRF token."""
    expected = request.session.get(CSRF_KEY)
    if not isinstance(expected, str) or not submitted:
        raise CsrfError()
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfError()


def dashboard_password(settings: Settings) -> str:
    """Return LLMTAP_DASHBOARD_PASSWORD, else the password generated at first boot."""
    return settings.dashboard_password or read_secret(settings, "dashboard")


def password_matches(settings: Settings, submitted: str) -> bool:
    expected = dashboard_password(settings)
    return hmac.compare_digest(expected.encode(), submitted.encode())


def client_address(request: Request) -> str:
    """Return the caller's address, taking X-Forwarded-For only from nginx.

    nginx on the same host sets X-Forwarded-For to the address it saw. The
    header is trusted only when the connection itself comes from 127.0.0.1,
    and then only its last entry, which is nginx's own even under a setting
    that appends to a client-sent header.
    """
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if peer == "127.0.0.1" and forwarded:
        return forwarded.split(",")[-1].strip() or peer
    return peer


def safe_next(target: str | None) -> str:
    """Return target when it is a path on this site, else the start page."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 for c in target):
        return "/"
    return target


class FailureLimiter:
    """Count failed sign-ins per client address over a sliding window."""

    def __init__(
        self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S
    ):
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def retry_after_s(self, address: str) -> int:
        """Return how long the address must wait, in seconds; 0 when it may try."""
        now = time.monotonic()
        failures = self._failures.get(address)
        if failures is None:
            return 0

        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return 0
        if len(failures) < self.max_failures:
            return 0
        return max(1, int(failures[0] + self.window_s - now))

    def record_failure(self, address: str) -> None:
        # Addresses are pruned when they are checked, so a flood of one-off
        # addresses is swept here to keep the table bounded.
        if len(self._failures) >= MAX_TRACKED_ADDRESSES:
            for known in list(self._failures):
                self.retry_after_s(known)
        self._failures[address].append(time.monotonic())

    def reset(self, address: str) -> None:
        self._failures.pop(address, None)
