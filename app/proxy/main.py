"""Assembly of the proxy process: the ASGI app, its lifespan and its own routes."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.logs import configure_logging
from app.pricing import load_prices
from app.proxy.app import ProxyApp, StreamAborted
from app.proxy.record import RowBuilder
from app.proxy.recorder import Recorder
from app.settings import Settings, get_settings
from app.store.spool import Spool, read_dropped
from app.store.writer import Writer

logger = logging.getLogger(__name__)

# Connections kept open per upstream origin; a home lab has one or two.
POOL_CONNECTIONS = 100


class DropAbortedStreams(logging.Filter):
    """Keeps uvicorn from logging a traceback for streams the proxy ends on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamAborted))


def create_app(settings: Settings | None = None) -> ProxyApp:
    settings = settings or get_settings()
    spool = Spool(settings.spool_dir, settings.spool_max_bytes)
    writer = Writer(settings, spool)
    recorder = Recorder(
        RowBuilder(settings, load_prices(settings.price_file)), spool, writer
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        proxy.client = new_client(settings)
        recorder.start()
        logger.info(
            "proxy started port=%d upstream=%s",
            settings.proxy_port,
            settings.upstream_url or "-",
        )
        try:
            yield
        finally:
            await recorder.stop()
            await proxy.client.aclose()
            logger.info("proxy stopped")

    internal = FastAPI(
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )

    @internal.get("/_llmtap/health")
    async def health() -> dict[str, object]:
        dropped = read_dropped(settings.spool_dir)
        return {
            "status": "ok",
            "database": "failing" if writer.failing else "ok",
            "database_error": writer.failing,
            "spool_segments": len(spool.ready()),
            "dropped": (dropped or {}).get("dropped", 0) + recorder.dropped,
        }

    proxy = ProxyApp(settings, recorder.submit, internal)
    return proxy


def new_client(settings: Settings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.upstream_connect_timeout_s,
        read=settings.upstream_header_timeout_s,
        write=settings.upstream_header_timeout_s,
        pool=settings.upstream_connect_timeout_s,
    )
    client = httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=None, max_keepalive_connections=POOL_CONNECTIONS
        ),
        follow_redirects=False,
        trust_env=False,
    )
    # httpx adds Accept, Accept-Encoding, Connection and User-Agent to every
    # request it sends; the upstream must see the client's headers only. The
    # headers setter would put the defaults back, so the mapping is emptied.
    client.headers.clear()
    return client


def configure() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    logging.getLogger("uvicorn.error").addFilter(DropAbortedStreams())
