"""A deadline for request headers, which uvicorn lacks: a client that opens a connection, sends
part of a request line or headers and goes silent would otherwise hold the connection forever
(slowloris). Enforced in the HTTP protocol, because no ASGI code runs before headers complete.

uvicorn picks httptools when it is installed (uvicorn[standard] installs it); this extends that
protocol, so parsing keeps its speed and only a timer per request is added.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """Closes the connection when a request's line and headers take longer than `header_timeout`
    seconds, counted from connecting, or from the first byte after the previous response."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        # Bytes between requests (even a bare CRLF, which starts no message) cancel uvicorn's
        # keep-alive timer, so the next request's clock starts here.
        if self.cycle is None or self.cycle.response_complete:
            self._arm_header_deadline()
        super().data_received(data)

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


def http_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """What to pass as uvicorn's `http=`. uvicorn only calls it, with keyword arguments; a
    partial, unlike a class made here, pickles into the worker processes uvicorn spawns."""
    return cast(
        "type[asyncio.Protocol]",
        functools.partial(HeaderTimeoutProtocol, header_timeout=header_timeout),
    )
