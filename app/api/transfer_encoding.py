"""`Content-Transfer-Encoding: base64` uploads, decoded while they stream.

curl-driven v1 scripts (and some generated clients) send image data base64-encoded with this
header; storing the encoded text as the image silently corrupts it (a cirros image becomes a
third larger and unbootable). The decoded bytes are what is hashed, counted and stored.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import AsyncIterator

from app.errors import BadRequest

# The encodings that leave the body as it is (RFC 2045's identity encodings).
_IDENTITY = frozenset({"binary", "8bit", "7bit"})
# Line breaks and spaces, as `base64` and MIME wrap the text; nothing else is skipped.
_WHITESPACE = b" \t\r\n"
_ALPHABET = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class InvalidBase64(BadRequest):
    def __init__(self) -> None:
        super().__init__(
            "The request body is not valid base64, as its Content-Transfer-Encoding says."
        )


def is_base64(header: str | None) -> bool:
    """Whether the body is base64 by its `Content-Transfer-Encoding` (400 for an encoding
    that is neither base64 nor an identity one)."""
    if header is None:
        return False
    encoding = header.strip().lower()
    if encoding == "base64":
        return True
    if encoding in _IDENTITY:
        return False
    raise BadRequest(f"Unsupported Content-Transfer-Encoding: {header.strip()}")


async def decoded(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The bytes `body` encodes, a piece per chunk received; InvalidBase64 as soon as the text
    is not base64 (a character outside the alphabet, padding before the end, a length that is
    not a multiple of four)."""
    pending = b""
    ended = False  # padding was seen: nothing may follow
    async for chunk in body:
        text = pending + chunk.translate(None, _WHITESPACE)
        if not text:
            continue
        if ended or not _ALPHABET.fullmatch(text):
            raise InvalidBase64()
        whole = len(text) - len(text) % 4
        pending = text[whole:]
        if not whole:
            continue
        quanta = text[:whole]
        # The pattern allows padding only at the end of what has arrived so far.
        ended = quanta.endswith(b"=")
        try:
            yield binascii.a2b_base64(quanta, strict_mode=True)
        except binascii.Error:
            raise InvalidBase64() from None
    if pending:
        raise InvalidBase64()
