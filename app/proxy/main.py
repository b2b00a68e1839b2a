"""Assembly of the proxy process: the ASGI app, its lifespan and its own routes."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.logs import configure_logging
from app.proxy.app import ProxyApp, StreamAborted
from app.proxy.spooler import Spooler
from app.proxy.upstream import Upstream
from app.settings import Settings, get_settings
from app.store.spool import Spool, read_dropped, read_status

logger = logging.getLogger(__name__)


class DropAbortedStreams(logging.Filter):
    """Keeps uvicorn from logging a traceback for streams the proxy ends on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamAborted))


def create_app(settings: Settings | None = None) -> ProxyApp:
    settings = settings or get_settings()
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    spooler = Spooler(spool)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        proxy.upstream = Upstream(settings)
        spooler.start()
        logger.info(
            "proxy started port=%d upstream=%s",
            settings.proxy_port,
            settings.upstream_url or "-",
        )
        try:
            yield
        finally:
            await spooler.stop()
            await proxy.upstream.close()
            logger.info("proxy stopped")

    internal = FastAPI(
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    @internal.get("/_llmtap/health")
    async def health() -> dict[str, object]:
        dropped = read_dropped(settings.spool_dir) or {}
        status = read_status(settings.spool_dir)
        error = status.get("database_error")
        return {
            "status": "ok",
            "database": "failing" if error else "ok",
            "database_error": error,
            "spool_segments": len(spool.ready()),
            "dropped": int(dropped.get("dropped", 0)) + spooler.unreported_drops,
        }

    proxy = ProxyApp(settings, spooler.submit, internal)
    return proxy


def configure() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    logging.getLogger("uvicorn.error").addFilter(DropAbortedStreams())
