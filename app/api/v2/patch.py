"""JSON-patch request bodies (both of Glance's media types) -> PatchOperations."""

from __future__ import annotations

from typing import Any

from app.errors import BadRequest, Forbidden, UnsupportedMediaType
from app.images.attributes import is_reserved
from app.images.service import PatchOperation

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
ACCEPT_PATCH = f"{PATCH_V20}, {PATCH_V21}"
_OPS = ("add", "remove", "replace")


def media_type(content_type: str | None) -> str:
    """The patch flavour named by Content-Type; 415 for anything else."""
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base not in (PATCH_V20, PATCH_V21):
        raise UnsupportedMediaType(
            content_type or "None",
            f"Image PATCH expects Content-Type one of: {ACCEPT_PATCH}",
            headers={"Accept-Patch": ACCEPT_PATCH},
        )
    return base


def _decode_pointer(pointer: Any) -> str:
    if not isinstance(pointer, str):
        raise BadRequest("Pointer must be a string.")
    if not pointer.startswith("/"):
        raise BadRequest(f'Pointer `{pointer}` does not start with "/".')
    if pointer.endswith("/"):
        raise BadRequest(f'Pointer `{pointer}` end with "/".')
    if "//" in pointer:
        raise BadRequest(f'Pointer `{pointer}` contains adjacent "/".')
    parts = pointer[1:].split("/")
    for part in parts:
        if "~" in part.replace("~0", "").replace("~1", ""):
            raise BadRequest(
                f'Pointer `{pointer}` contains "~" not part of a recognized escape sequence.'
            )
    if len(parts) > 1:
        if parts[0] == "locations" or is_reserved(parts[0]):
            raise Forbidden()
        raise BadRequest(f"Invalid JSON pointer for this resource: '{pointer}'")
    return parts[0].replace("~1", "/").replace("~0", "~")


def _operation_v21(raw: dict[str, Any]) -> PatchOperation:
    op = raw.get("op")
    if op not in _OPS:
        raise BadRequest(
            f"Invalid operation: `{op}`. It must be one of the following: {', '.join(_OPS)}."
        )
    if "path" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "path".')
    if op != "remove" and "value" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    return PatchOperation(op=op, name=_decode_pointer(raw["path"]), value=raw.get("value"))


def _operation_v20(raw: dict[str, Any]) -> PatchOperation:
    ops = [op for op in _OPS if op in raw]
    if len(ops) != 1:
        raise BadRequest(
            'Operation objects must contain exactly one member named "add", "remove", or "replace".'
        )
    op = ops[0]
    if op != "remove" and "value" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    return PatchOperation(
        op=op, name=_decode_pointer(raw[op]), value=raw.get("value"), strict_add=True
    )


def parse(flavour: str, body: Any) -> list[PatchOperation]:
    if not isinstance(body, list):
        raise BadRequest("Request body must be a JSON array of operation objects.")
    operations = []
    for raw in body:
        if not isinstance(raw, dict):
            raise BadRequest("Operations must be JSON objects.")
        operations.append(_operation_v21(raw) if flavour == PATCH_V21 else _operation_v20(raw))
    return operations
