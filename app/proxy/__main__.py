"""Run the logging proxy: `python -m app.proxy`."""

import uvicorn

from app.proxy.main import configure
from app.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure()
    uvicorn.run(
        "app.proxy.main:create_app",
        factory=True,
        host="127.0.0.1",
        port=settings.proxy_port,
        workers=settings.proxy_workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        # The upstream's own Server and Date headers pass through unchanged.
        server_header=False,
        date_header=False,
        # A client may keep a connection idle between chat turns.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
