"""Small faulty servers on 127.0.0.1 for the upstream-fault tests.

The scripted upstream always sends a status line before its steps. These
servers fail earlier, because they end the connection before any response or
speak TLS with a certificate that no client trusts.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path
from types import TracebackType

ACCEPT_TIMEOUT_S = 0.2
PLAIN_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class FaultServer:
    """Accepts connections in a thread and ends each one in its own way.

    `mode` is "fin" (read the request head, then close), "rst" (read it, then
    reset), "http" (reply to whatever arrives with a plain HTTP 400, as a web
    server does when a TLS handshake reaches its plain port) or "tls"
    (complete a TLS handshake with `context`, then close).
    """

    def __init__(self, mode: str, context: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.context = context
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(ACCEPT_TIMEOUT_S)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, name=f"fault-{mode}")

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            try:
                self.end(connection)
            except (OSError, ssl.SSLError):
                # The client gave up first; that is what these servers provoke.
                pass
            finally:
                connection.close()

    def end(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        if self.mode == "tls":
            assert self.context is not None
            with self.context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(65536)
            return

        connection.recv(65536)
        if self.mode == "http":
            connection.sendall(PLAIN_400)
        if self.mode == "rst":
            # Linger on with a zero timeout makes close() send RST, not FIN.
            linger = struct.pack("ii", 1, 0)
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """Return a server TLS context with a fresh self-signed certificate.

    The certificate is made by the openssl command, which the image's base
    system carries; no client trusts it.
    """
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl is needed to make a test certificate"
    key = directory / "key.pem"
    certificate = directory / "cert.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(certificate),
            "-days", "1", "-subj", "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return context
