"""A TCP forwarder in front of a real server, that a test can cut.

The store tests talk to real Swift, S3 and HTTP servers; what those servers cannot be made to do
on demand (vanish in the middle of an upload or a download) this forwarder does to the
connection instead, so the client library sees exactly what a dead server looks like: a reset
connection, then connections refused.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator


class Cuttable:
    """Listens on 127.0.0.1 (`port`) and forwards every connection to `target`.

    `cut()` resets every open connection and refuses new ones until `mend()`. With
    `cut_after_upstream(n)`, the forwarder cuts by itself once `n` more bytes went from
    clients to the server (a server dying in the middle of an upload); `cut_after_downstream`
    does the same for bytes going back (dying in the middle of a download).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._cut = False
        self._budget: dict[str, int | None] = {"up": None, "down": None}
        self._closed = False
        self.upstream_bytes = 0
        self.downstream_bytes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _reset(sock)

    def mend(self) -> None:
        with self._lock:
            self._cut = False
            self._budget = {"up": None, "down": None}

    def cut_after_upstream(self, count: int) -> None:
        with self._lock:
            self._budget["up"] = count

    def cut_after_downstream(self, count: int) -> None:
        with self._lock:
            self._budget["down"] = count

    @property
    def is_cut(self) -> bool:
        return self._cut

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._cut
            if refused:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        # Polled rather than blocked in recv: a socket closed while another thread sits in recv
        # on it is only closed (and reset) once that recv returns.
        try:
            while source.fileno() != -1:
                readable, _, _ = select.select([source], [], [], 0.05)
                if not readable:
                    continue
                data = source.recv(256 * 1024)
                if not data:
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                with self._lock:
                    budget = self._budget[direction]
                    if budget is not None:
                        data = data[:budget]
                        self._budget[direction] = budget - len(data)
                if data:
                    sink.sendall(data)
                    if direction == "up":
                        self.upstream_bytes += len(data)
                    else:
                        self.downstream_bytes += len(data)
                if budget is not None and self._budget[direction] == 0:
                    self.cut()
                    return
        except (OSError, ValueError):  # ValueError: select on a socket closed meanwhile
            _reset(source)
            _reset(sink)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close sends a RST, as a crashed peer's kernel would, not a clean FIN.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


@contextlib.contextmanager
def cuttable(target_host: str, target_port: int) -> Iterator[Cuttable]:
    forwarder = Cuttable(target_host, target_port)
    try:
        yield forwarder
    finally:
        forwarder.close()
