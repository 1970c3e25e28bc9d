"""`multipart/form-data` uploads (a browser form, Swagger UI) streamed like raw bodies.

Only the bytes of the one file part are passed on, as they arrive: nothing is spooled to a
temporary file (Starlette's form parser would), so memory stays flat whatever the image size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import BadRequest


def boundary(content_type: str) -> bytes | None:
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        return None
    found = options.get(b"boundary")
    if not found:
        raise BadRequest("multipart/form-data without a boundary.")
    return found


class _FileParts:
    """Parser callbacks: collects the bytes of file parts, refuses a second file."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.headers = b""
        self.in_file = False
        self.files = 0
        self.done = False

    def on_part_begin(self) -> None:
        self.headers = b""

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.headers += data[start:end].lower() + b"\n"

    def on_headers_finished(self) -> None:
        self.in_file = b"filename=" in self.headers
        if self.in_file:
            self.files += 1
            if self.files > 1:
                raise BadRequest("Upload exactly one file per request.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.pending.append(data[start:end])

    def on_end(self) -> None:
        self.done = True

    def take(self) -> bytes:
        chunk = b"".join(self.pending)
        self.pending.clear()
        return chunk


async def file_part(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[bytes]:
    """The content of the single part that carries a filename."""
    parts = _FileParts()
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": parts.on_part_begin,
            "on_header_value": parts.on_header_value,
            "on_headers_finished": parts.on_headers_finished,
            "on_part_data": parts.on_part_data,
            "on_end": parts.on_end,
        },
    )
    async for chunk in body:
        try:
            parser.write(chunk)
        except BadRequest:
            raise
        except Exception as exc:  # the library's parse errors
            raise BadRequest(f"Malformed multipart/form-data body: {exc}") from None
        if parts.pending:
            yield parts.take()
    parser.finalize()
    if not parts.done or parts.files == 0:
        raise BadRequest("The multipart/form-data body holds no complete file part.")
