"""HTTP Range requests on image data, with the answers Glance gives (400, 416 and its texts)."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import BadRequest, GlintError


class RangeNotSatisfiable(GlintError):
    status_code = 416
    message = "The Range requested is not available."


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """A single `bytes=` range, as Glance accepts it; None for the whole image."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec:
        raise RangeNotSatisfiable(detail="Invalid Range header.")
    if "," in spec:
        raise BadRequest(
            "Requests with multiple ranges are not supported in Glance. "
            "You may make multiple single-range requests instead."
        )
    first, dash, last = spec.strip().partition("-")
    try:
        if not dash:
            raise ValueError(spec)
        if not first:  # suffix: the last N bytes
            suffix = int(last)
            if suffix <= 0 or size == 0:
                raise RangeNotSatisfiable(detail="Invalid Range header.")
            start, end = max(size - suffix, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
            if start < 0 or end < start:
                raise RangeNotSatisfiable(detail="Invalid Range header.")
    except ValueError:
        raise RangeNotSatisfiable(detail="Invalid Range header.") from None
    if start >= size:
        raise RangeNotSatisfiable(
            detail="Invalid start position in Range header. Start position MUST be in the "
            f"inclusive range [0, {size - 1}]."
        )
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)


def legacy_content_range(header: str | None) -> str | None:
    """Glance also honours a request `Content-Range: bytes a-b/*` as a range request."""
    if header is None:
        return None
    unit, _, spec = header.strip().partition(" ")
    return f"{unit}={spec.split('/', 1)[0]}"
