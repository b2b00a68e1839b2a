"""Run the logging proxy: `python -m app.proxy`.

This process starts the recorder (`python -m app.proxy.recorder`) as its child,
restarts it if it dies, and then serves the proxy with uvicorn. The recorder
parses and stores exchanges on its own core, so forwarding does not wait for it.
"""

import logging
import subprocess
import sys
import threading
import time

import uvicorn

from app.proxy.main import configure
from app.settings import get_settings

logger = logging.getLogger("app.proxy")

# Pause before restarting a recorder that exited, so a crash loop stays cheap.
RESTART_DELAY_S = 1.0


def start_recorder() -> subprocess.Popen[bytes]:
    # The pipe on the child's stdin closes when this process ends, however it
    # ends, and the recorder then stops.
    return subprocess.Popen(
        [sys.executable, "-m", "app.proxy.recorder"], stdin=subprocess.PIPE
    )


def keep_recorder_running(state: dict[str, subprocess.Popen[bytes] | bool]) -> None:
    while not state["stopping"]:
        child = state["child"]
        assert isinstance(child, subprocess.Popen)
        status = child.wait()
        if state["stopping"]:
            return
        logger.warning("recorder exited; restarting status=%s", status)
        time.sleep(RESTART_DELAY_S)
        state["child"] = start_recorder()


def main() -> None:
    settings = get_settings()
    configure()
    state: dict[str, subprocess.Popen[bytes] | bool] = {
        "child": start_recorder(),
        "stopping": False,
    }
    threading.Thread(target=keep_recorder_running, args=(state,), daemon=True).start()
    try:
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
    finally:
        state["stopping"] = True
        child = state["child"]
        assert isinstance(child, subprocess.Popen)
        child.terminate()
        child.wait(timeout=15)


if __name__ == "__main__":
    main()
