"""Settings of every llmtap process, read from environment variables.

Every field is read from `LLMTAP_<FIELD>`; the README's settings table lists them
and a test keeps that table in step with this class. msgspec checks the values
because it costs the recorder process about 2 MB, where pydantic costs 13 MB.
"""

import os
import sys
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

MIB = 1024 * 1024
ENV_PREFIX = "LLMTAP_"

# Values people paste from examples; a secret equal to one of them is rejected.
PLACEHOLDER_SECRETS = {"changeme", "change-me", "password", "secret", "admin", "llmtap"}
# Settings whose values never appear in an error message.
SECRET_FIELDS = {"dashboard_password", "openwebui_jwt_secret"}


class SettingsError(ValueError):
    """Invalid settings: one line per variable, each naming the variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    home: Annotated[
        Path,
        Meta(
            description="Directory of the llmtap code (supervisord.conf, nginx/, app/)."
        ),
    ] = Path(__file__).resolve().parent.parent
    data_dir: Annotated[
        Path,
        Meta(
            description="Persistent directory for the database, secrets, spool and "
            "rendered configuration; the image sets it to /data, its "
            "volume."
        ),
    ] = Path("/var/lib/llmtap")
    upstream_url: Annotated[
        str,
        Meta(
            description="Model server used when a request names no "
            "Helicone-Target-URL, for example http://ollama:11434. Its "
            "origin is always allowed."
        ),
    ] = ""
    allowed_targets: Annotated[
        str,
        Meta(
            description="Comma-separated extra origins that Helicone-Target-URL may "
            "name, for example "
            "https://api.openai.com,http://10.0.0.5:11434."
        ),
    ] = ""

    entry_port: Annotated[int, Meta(description="nginx port of the proxy entry.")] = (
        8786
    )
    dashboard_port: Annotated[int, Meta(description="nginx port of the dashboard.")] = (
        3100
    )
    proxy_port: Annotated[int, Meta(description="Port of the logging proxy.")] = 8787
    web_port: Annotated[int, Meta(description="Port of the dashboard process.")] = 3000
    postgrest_port: Annotated[int, Meta(description="Port of PostgREST.")] = 3001
    postgrest_admin_port: Annotated[
        int, Meta(description="Port of PostgREST's admin server (/live, /ready).")
    ] = 3002
    postgres_port: Annotated[
        int,
        Meta(
            description="Port number of the PostgreSQL socket; it listens on a Unix "
            "socket in DATA_DIR/run only."
        ),
    ] = 5432
    bind_host: Annotated[
        str,
        Meta(description="Address nginx listens on for the entry and dashboard ports."),
    ] = "0.0.0.0"

    proxy_workers: Annotated[
        int,
        Meta(
            ge=1, le=64, description="Number of uvicorn worker processes of the proxy."
        ),
    ] = 1
    upstream_connect_timeout_s: Annotated[
        float,
        Meta(
            gt=0, description="Time allowed to open a connection upstream, in seconds."
        ),
    ] = 10.0
    upstream_header_timeout_s: Annotated[
        float,
        Meta(
            gt=0,
            description="Time allowed for the upstream's response headers, in seconds. "
            "Long by default because a cold model load can take minutes.",
        ),
    ] = 600.0
    upstream_idle_timeout_s: Annotated[
        float,
        Meta(
            gt=0,
            description="Maximum silence between two chunks of an upstream response, "
            "in seconds.",
        ),
    ] = 300.0
    max_request_bytes: Annotated[
        int,
        Meta(
            gt=0,
            description="Largest request body the proxy accepts, in bytes; larger "
            "bodies get 413. Sized for several base64 images.",
        ),
    ] = 64 * MIB
    store_body_max_bytes: Annotated[
        int,
        Meta(
            gt=0,
            description="Largest request or response body stored per exchange, in "
            "bytes; longer bodies are cut and marked truncated.",
        ),
    ] = 1 * MIB
    store_images: Annotated[
        bool,
        Meta(
            description="Keep inline data: images in stored request bodies instead of "
            "a note of their type and size."
        ),
    ] = False
    inject_stream_usage: Annotated[
        bool,
        Meta(
            description="Add stream_options.include_usage to streamed "
            "OpenAI-compatible requests that lack it, and hide the extra "
            "usage chunk from the client."
        ),
    ] = False
    price_file: Annotated[
        Path | None,
        Meta(description="JSON price table that replaces the built-in one."),
    ] = None
    openwebui_jwt_secret: Annotated[
        str,
        Meta(
            description="Shared secret that verifies Open WebUI's X-OpenWebUI-User-Jwt "
            "header."
        ),
    ] = ""

    spool_max_bytes: Annotated[
        int,
        Meta(
            gt=0,
            description="Disk space the proxy's spool of unsent exchanges may use, in "
            "bytes; past it the oldest unsent exchanges are dropped and "
            "counted.",
        ),
    ] = 256 * MIB
    dashboard_auth: Annotated[
        Literal["on", "off"],
        Meta(description="Require a password for the dashboard and its JSON API."),
    ] = "on"
    dashboard_password: Annotated[
        str,
        Meta(
            description="Dashboard password; when empty one is generated at first boot "
            "and printed once in the log."
        ),
    ] = ""
    api_anonymous: Annotated[
        bool,
        Meta(
            description="Let requests without a token read the PostgREST views that "
            "hold no bodies or headers."
        ),
    ] = False
    retention_max_age_days: Annotated[
        float,
        Meta(
            ge=0, description="Delete exchanges older than this, in days; 0 keeps all."
        ),
    ] = 0
    retention_max_db_bytes: Annotated[
        int,
        Meta(
            ge=0,
            description="Delete the oldest exchanges while the database is larger than "
            "this, in bytes; 0 sets no limit.",
        ),
    ] = 0
    log_level: Annotated[
        str, Meta(description="Log level of the Python processes.")
    ] = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """Read every `LLMTAP_<FIELD>`. An unset or empty variable keeps the default.

        Raises SettingsError listing every invalid variable at once.
        """
        values: dict[str, Any] = {}
        problems = []
        for field in msgspec.structs.fields(cls):
            name = ENV_PREFIX + field.name.upper()
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            try:
                values[field.name] = _convert(field.name, raw, field.type)
            except ValueError as error:
                quoted_value = "" if field.name in SECRET_FIELDS else f"={raw!r}"
                problems.append(f"{name}{quoted_value}: {error}")
        if problems:
            raise SettingsError(problems)
        return cls(**values)

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


def _convert(field: str, raw: str, annotation: Any) -> Any:
    try:
        value = msgspec.convert(raw, annotation, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as error:
        raise ValueError(f"{error}; see the settings table in the README") from None
    check = CHECKS.get(field)
    return check(value) if check else value


def _decode(annotation: type, value: Any) -> Any:
    if annotation is Path:
        return Path(value)
    raise NotImplementedError(annotation)


def _check_upstream_url(value: str) -> str:
    if urlsplit(value).scheme not in ("http", "https"):
        raise ValueError(
            "not an http(s) URL; set it to the model server, for example "
            "http://ollama:11434"
        )
    return value


def _reject_placeholder(value: str) -> str:
    if value.lower() in PLACEHOLDER_SECRETS:
        raise ValueError(
            "a placeholder secret was given; set a real value or leave it empty "
            "so that one is generated"
        )
    return value


CHECKS: dict[str, Callable[[Any], Any]] = {
    "upstream_url": _check_upstream_url,
    "dashboard_password": _reject_placeholder,
    "openwebui_jwt_secret": _reject_placeholder,
}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


def settings_or_exit() -> Settings:
    """Return the settings, or exit with one line per invalid variable."""
    try:
        return get_settings()
    except SettingsError as error:
        lines = [f"  {problem}" for problem in error.problems]
        sys.exit("\n".join(["llmtap: invalid settings:", *lines]))
