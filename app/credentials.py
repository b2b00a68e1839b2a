"""Per-installation secrets, generated once and kept on the data volume.

Each secret is one file in DATA_DIR/secrets with mode 0600. Nothing here is ever
logged; the generated dashboard password is printed once by the boot step.
"""

import os
import secrets
from pathlib import Path

from app.settings import Settings


def secret_path(settings: Settings, name: str) -> Path:
    return settings.secrets_dir / f"{name}.secret"


def read_secret(settings: Settings, name: str) -> str:
    """Return a stored secret; raise RuntimeError when the data dir is not set up."""
    path = secret_path(settings, name)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise RuntimeError(
            f"secret {path} is missing; start the appliance once with "
            "`python -m app.boot` "
            f"(or ./scripts/run) so that DATA_DIR={settings.data_dir} is initialised"
        ) from None


def ensure_secret(
    settings: Settings, name: str, owner: tuple[int, int] | None = None
) -> bool:
    """Create the secret file if it is missing; return True when it was created."""
    path = secret_path(settings, name)
    if path.exists():
        return False

    # 32 random bytes; PostgREST needs a JWT secret of at least 32 characters.
    value = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    if owner is not None:
        os.chown(path, *owner)
    return True
