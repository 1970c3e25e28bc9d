"""JSON-patch request bodies (both of Glance's media types) -> the domain's image changes.

Each operation is checked as Glance's request deserializer checks it, in order: well-formed,
a settable attribute, then its value against the image schema."""

from __future__ import annotations

from typing import Any

from app.api.v2.json_schemas import ImageValidator
from app.errors import BadRequest, Forbidden, UnsupportedMediaType
from app.images import attributes
from app.images.locations import (
    AddLocation,
    LocationChange,
    NewLocation,
    RemoveLocation,
    ReplaceLocations,
)
from app.images.service import ImageChange, RemoveAttribute, SetAttribute

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
ACCEPT_PATCH = f"{PATCH_V20}, {PATCH_V21}"
_OPS = ("add", "remove", "replace")
_LOCATION_DEPTHS = {"add": 2, "remove": 2, "replace": 1}


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


def _decode_pointer(pointer: Any) -> list[str]:
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
    return [part.replace("~1", "/").replace("~0", "~") for part in parts]


def _check_depth(op: str, parts: list[str], pointer: str) -> None:
    """One level deep, except `/locations/<position>` for add and remove."""
    depth = _LOCATION_DEPTHS[op] if parts[0] == "locations" else 1
    if len(parts) == depth:
        return
    if len(parts) > 1 and attributes.is_reserved(parts[0]):
        raise Forbidden()
    raise BadRequest(f"Invalid JSON pointer for this resource: '{pointer}'")


def _operation_v21(raw: dict[str, Any]) -> tuple[str, Any, Any]:
    op = raw.get("op")
    if op not in _OPS:
        raise BadRequest(
            f"Invalid operation: `{op}`. It must be one of the following: {', '.join(_OPS)}."
        )
    if "path" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "path".')
    if op != "remove" and "value" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    return op, raw["path"], raw.get("value")


def _operation_v20(raw: dict[str, Any]) -> tuple[str, Any, Any]:
    ops = [op for op in _OPS if op in raw]
    if len(ops) != 1:
        raise BadRequest(
            'Operation objects must contain exactly one member named "add", "remove", or "replace".'
        )
    op = ops[0]
    if op != "remove" and "value" not in raw:
        raise BadRequest(f'Operation "{op}" requires a member named "value".')
    return op, raw[op], raw.get("value")


def integral(name: str, value: Any) -> Any:
    """JSON Schema counts 5.0 as an integer; the domain wants the int."""
    if name in ("min_ram", "min_disk") and isinstance(value, float):
        return int(value)
    return value


def parse(flavour: str, body: Any, validate: ImageValidator) -> list[ImageChange]:
    if not isinstance(body, list):
        raise BadRequest("Request body must be a JSON array of operation objects.")
    changes: list[ImageChange] = []
    for raw in body:
        if not isinstance(raw, dict):
            raise BadRequest("Operations must be JSON objects.")
        op, pointer, value = (_operation_v21 if flavour == PATCH_V21 else _operation_v20)(raw)
        parts = _decode_pointer(pointer)
        _check_depth(op, parts, pointer)
        name = parts[0]
        if name == "locations":
            changes.append(_location_change(op, parts, value, validate))
            continue
        attributes.check_settable(name, creating=False)
        if op == "remove":
            changes.append(RemoveAttribute(name))
            continue
        validate({name: value})
        changes.append(
            SetAttribute(
                name,
                integral(name, value),
                must_exist=op == "replace",
                # The deprecated v2.0 media type refuses `add` of an existing attribute.
                must_be_absent=op == "add" and flavour == PATCH_V20,
            )
        )
    return changes


def _new_location(value: dict[str, Any]) -> NewLocation:
    return NewLocation(
        url=value["url"],
        metadata=value["metadata"],
        validation_data=value.get("validation_data", {}),
    )


def _location_change(
    op: str, parts: list[str], value: Any, validate: ImageValidator
) -> LocationChange:
    """`add /locations/<n>`, `remove /locations/<n>` or `replace /locations`, its value
    checked against the image schema's `locations`."""
    if op == "remove":
        return RemoveLocation(parts[1])
    if op == "add":
        validate({"locations": [value]})
        return AddLocation(parts[1], _new_location(value))
    validate({"locations": value})
    return ReplaceLocations(tuple(_new_location(item) for item in value))
