"""Print a PostgREST token for the read-only API role.

Usage: python -m app.web.token [--days N]. The token is a JWT signed with HS256
and the appliance's "jwt" secret, which PostgREST verifies.
"""

import argparse
import time

import jwt

from app.credentials import read_secret
from app.settings import Settings, settings_or_exit

READER_ROLE = "llmtap_api_reader"
DEFAULT_DAYS = 30.0


def make_token(settings: Settings, days: float) -> str:
    """Return a token for READER_ROLE that expires after days."""
    claims = {"role": READER_ROLE, "exp": int(time.time() + days * 86400)}
    return jwt.encode(claims, read_secret(settings, "jwt"), algorithm="HS256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.web.token", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--days",
        type=float,
        default=DEFAULT_DAYS,
        help=f"days until the token expires (default {DEFAULT_DAYS:g})",
    )
    arguments = parser.parse_args(argv)
    if arguments.days <= 0:
        parser.error(f"--days must be positive, got {arguments.days:g}")
    settings = settings_or_exit()
    try:
        token = make_token(settings, arguments.days)
    except RuntimeError as error:
        # The secret is missing: print the explanation, not a traceback.
        parser.exit(1, f"{error}\n")
    print(token)


if __name__ == "__main__":
    main()
