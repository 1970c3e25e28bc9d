"""A deadline and a size cap for request heads, which uvicorn lacks: a client that opens a
connection, sends part of a request line or headers and goes silent would otherwise hold the
connection forever (slowloris), and httptools buffers a head of any size in memory. Enforced in
the HTTP protocol, because no ASGI code runs before headers complete.

uvicorn picks httptools when it is installed (uvicorn[standard] installs it); this extends that
protocol, so parsing keeps its speed and only a timer per request is added.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TOO_LARGE_BODY = (
    b"431 Request Header Fields Too Large\n\nThe request header fields were too large\n\n"
)
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=UTF-8\r\n"
    b"content-length: " + str(len(_TOO_LARGE_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _TOO_LARGE_BODY
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Closes the connection when a request's line and headers take longer than `header_timeout`
    seconds, counted from connecting, or from the first byte after the previous response; and
    answers 431 when they run past `max_head_bytes`."""

    def __init__(
        self, *args: Any, header_timeout: float, max_head_bytes: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._max_head_bytes = max_head_bytes
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        # Bytes between requests (even a bare CRLF, which starts no message) cancel uvicorn's
        # keep-alive timer, so the next request's clock starts here.
        if self.cycle is None or self.cycle.response_complete:
            self._arm_header_deadline()
        in_head = self._header_deadline is not None
        super().data_received(data)
        # Counted only when the head is still incomplete after this chunk: then all of it was
        # head, and a chunk that completes the head (and may carry body bytes) is not counted.
        if in_head and self._header_deadline is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head_bytes:
                self._cancel_header_deadline()
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_message_begin(self) -> None:
        # A pipelined request arrives while the previous one is still being answered.
        self._arm_header_deadline()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._head_bytes = 0
            self._header_deadline = self.loop.call_later(
                self._header_timeout, self._header_deadline_passed
            )

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float, max_head_bytes: int) -> type[asyncio.Protocol]:
    """What to pass as uvicorn's `http=`. uvicorn only calls it, with keyword arguments; a
    partial, unlike a class made here, pickles into the worker processes uvicorn spawns."""
    return cast(
        "type[asyncio.Protocol]",
        functools.partial(
            HeaderTimeoutProtocol, header_timeout=header_timeout, max_head_bytes=max_head_bytes
        ),
    )
