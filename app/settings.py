"""Settings of every llmtap process, read from environment variables.

Every field is read from `LLMTAP_<FIELD>`; the README's settings table lists them
and a test keeps that table in step with this class.
"""

import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024

# Values people paste from examples; a secret equal to one of them is rejected.
PLACEHOLDER_SECRETS = {"changeme", "change-me", "password", "secret", "admin", "llmtap"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMTAP_", extra="ignore")

    home: Path = Field(
        default=Path(__file__).resolve().parent.parent,
        description="Directory of the llmtap code (supervisord.conf, nginx/, app/).",
    )
    data_dir: Path = Field(
        default=Path("/var/lib/llmtap"),
        description="Persistent directory for the database, secrets, spool and "
        "rendered configuration; the image sets it to /data, its volume.",
    )
    upstream_url: str = Field(
        default="",
        description="Model server used when a request names no Helicone-Target-URL, "
        "for example http://ollama:11434. Its origin is always allowed.",
    )
    allowed_targets: str = Field(
        default="",
        description="Comma-separated extra origins that Helicone-Target-URL may name, "
        "for example https://api.openai.com,http://10.0.0.5:11434.",
    )

    entry_port: int = Field(default=8786, description="nginx port of the proxy entry.")
    dashboard_port: int = Field(
        default=3100, description="nginx port of the dashboard."
    )
    proxy_port: int = Field(default=8787, description="Port of the logging proxy.")
    web_port: int = Field(default=3000, description="Port of the dashboard process.")
    postgrest_port: int = Field(default=3001, description="Port of PostgREST.")
    postgrest_admin_port: int = Field(
        default=3002, description="Port of PostgREST's admin server (/live, /ready)."
    )
    postgres_port: int = Field(
        default=5432,
        description="Port number of the PostgreSQL socket; it listens on a Unix "
        "socket in DATA_DIR/run only.",
    )
    bind_host: str = Field(
        default="0.0.0.0",
        description="Address nginx listens on for the entry and dashboard ports.",
    )

    proxy_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Number of uvicorn worker processes of the proxy.",
    )
    upstream_connect_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time allowed to open a connection upstream, in seconds.",
    )
    upstream_header_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Time allowed for the upstream's response headers, in seconds. "
        "Long by default because a cold model load can take minutes.",
    )
    upstream_idle_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Maximum silence between two chunks of an upstream response, "
        "in seconds.",
    )
    max_request_bytes: int = Field(
        default=64 * MIB,
        gt=0,
        description="Largest request body the proxy accepts, in bytes; larger bodies "
        "get 413. Sized for several base64 images.",
    )
    store_body_max_bytes: int = Field(
        default=1 * MIB,
        gt=0,
        description="Largest request or response body stored per exchange, in bytes; "
        "longer bodies are cut and marked truncated.",
    )
    store_images: bool = Field(
        default=False,
        description="Keep inline data: images in stored request bodies instead of a "
        "note of their type and size.",
    )
    inject_stream_usage: bool = Field(
        default=False,
        description="Add stream_options.include_usage to streamed OpenAI-compatible "
        "requests that lack it, and hide the extra usage chunk from the client.",
    )
    price_file: Path | None = Field(
        default=None,
        description="JSON price table that replaces the built-in one.",
    )
    openwebui_jwt_secret: str = Field(
        default="",
        description="Shared secret that verifies Open WebUI's X-OpenWebUI-User-Jwt "
        "header.",
    )

    spool_max_bytes: int = Field(
        default=256 * MIB,
        gt=0,
        description="Disk space the proxy's spool of unsent exchanges may use, "
        "in bytes; "
        "past it the oldest unsent exchanges are dropped and counted.",
    )
    dashboard_auth: Literal["on", "off"] = Field(
        default="on",
        description="Require a password for the dashboard and its JSON API.",
    )
    dashboard_password: str = Field(
        default="",
        description="Dashboard password; when empty one is generated at first boot and "
        "printed once in the log.",
    )
    api_anonymous: bool = Field(
        default=False,
        description="Let requests without a token read the PostgREST views that hold "
        "no bodies or headers.",
    )
    retention_max_age_days: float = Field(
        default=0,
        ge=0,
        description="Delete exchanges older than this, in days; 0 keeps all.",
    )
    retention_max_db_bytes: int = Field(
        default=0,
        ge=0,
        description="Delete the oldest exchanges while the database is larger "
        "than this, "
        "in bytes; 0 sets no limit.",
    )
    log_level: str = Field(
        default="INFO", description="Log level of the Python processes."
    )

    @field_validator("upstream_url")
    @classmethod
    def _check_upstream_url(cls, value: str) -> str:
        value = value.strip()
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(
                f"LLMTAP_UPSTREAM_URL={value!r} is not an http(s) URL; "
                "set it to the model server, for example http://ollama:11434"
            )
        return value

    @field_validator("dashboard_password", "openwebui_jwt_secret")
    @classmethod
    def _reject_placeholder(cls, value: str) -> str:
        if value.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "a placeholder secret was given; set a real value or leave it empty "
                "so that one is generated"
            )
        return value

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def pg_data_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def pg_socket_dir(self) -> Path:
        return self.run_dir / "postgres"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_or_exit() -> Settings:
    """Return the settings, or exit with one line per invalid variable."""
    try:
        return get_settings()
    except ValidationError as error:
        lines = ["llmtap: invalid settings:"]
        for problem in error.errors():
            name = "LLMTAP_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"  {name}: {message}")
        sys.exit("\n".join(lines))
