"""Threaded HTTP(S) test servers on loopback that count their connections, for the http store
and web-download tests; each test file's handler routes its own paths."""

from __future__ import annotations

import contextlib
import socketserver
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


class CountingHandler(BaseHTTPRequestHandler):
    """Keeps `server.open_connections` up to date (tests check that nothing leaks)."""

    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open_connections += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.open_connections -= 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        handler: type[CountingHandler],
        host: str = "127.0.0.1",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__((host, 0), handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.lock = threading.Lock()
        self.open_connections = 0
        self.client_went_away = threading.Event()

    def server_bind(self) -> None:
        # HTTPServer's own looks the host name up (getfqdn), which can take seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-response are what some tests are about

    @property
    def port(self) -> int:
        return self.server_port

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"


S = TypeVar("S", bound=LoopbackServer)


@contextlib.contextmanager
def running(server: S) -> Iterator[S]:
    # Polled often: shutdown() waits for the next poll, and every test stops its servers.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
