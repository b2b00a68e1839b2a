"""Run the dashboard with uvicorn on 127.0.0.1:LLMTAP_WEB_PORT, behind nginx."""

import logging
import sys

import uvicorn

from app.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        stream=sys.stdout,
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    # log_config=None keeps uvicorn's loggers on the root handler above, so
    # everything goes to stdout for supervisord. proxy_headers is off because
    # app.web.auth decides itself when X-Forwarded-For can be trusted.
    uvicorn.run(
        "app.web.main:app",
        host="127.0.0.1",
        port=settings.web_port,
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
