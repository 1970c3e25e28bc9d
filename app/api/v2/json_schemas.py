"""`GET /v2/schemas/*`: Glance-style JSON schemas built from the wire models in `schemas.py`.

python-glanceclient validates requests and responses against these, and Glint validates request
bodies against the same documents (with jsonschema, as Glance does), so the three cannot drift.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import jsonschema
from annotated_types import MaxLen
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from app.api.deps import ContextDep
from app.api.v2.responses import error_responses
from app.api.v2.schemas import ImageV2, MemberV2, TaskStubV2, TaskV2
from app.config import ImageFormatSettings
from app.errors import BadRequest


class SchemaViolation(BadRequest):
    """A value does not match the image schema (jsonschema's wording, as Glance reports it)."""

    def __init__(self, schema_name: str, reason: str):
        super().__init__(f"Provided object does not match schema '{schema_name}': {reason}")


# Validates a document (a whole request body, or one attribute) against a published schema.
ImageValidator = Callable[[dict[str, Any]], None]

_JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    list: "array",
    dict: "object",
}
_FIRST_KEYS = ("type", "readOnly", "description")


def _json_type(annotation: Any) -> tuple[str, bool, list[Any] | None]:
    """(json type, nullable, enum values) of a field annotation."""
    nullable = False
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        nullable = type(None) in args
        annotation = next(arg for arg in args if arg is not type(None))
    if typing.get_origin(annotation) is Literal:
        return "string", nullable, list(typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "string", nullable, [member.value for member in annotation]
    origin = typing.get_origin(annotation) or annotation
    return _JSON_TYPES[origin], nullable, None


def _property(field: FieldInfo, formats: dict[str, list[str]], name: str) -> dict[str, Any]:
    json_type, nullable, choices = _json_type(field.annotation)
    extra = dict(field.json_schema_extra or {})  # type: ignore[arg-type]
    out: dict[str, Any] = {"type": ["null", json_type] if nullable else json_type}
    if extra.pop("readOnly", False):
        out["readOnly"] = True
    if field.description:
        out["description"] = field.description
    for meta in field.metadata:
        if isinstance(meta, MaxLen):
            out["maxLength"] = meta.max_length
        elif getattr(meta, "pattern", None):
            out["pattern"] = meta.pattern
    if name in formats:
        extra["enum"] = [None, *formats[name]]
    elif choices is not None:
        extra["enum"] = choices
    if name == "locations":
        # Glance lists `items` before `description` here only; keep its order.
        return {"type": "array", "items": extra["items"], "description": field.description}
    out.update(extra)
    return out


def _properties(model: type[BaseModel], formats: dict[str, list[str]]) -> dict[str, Any]:
    return {
        (field.alias or name): _property(field, formats, field.alias or name)
        for name, field in model.model_fields.items()
    }


def image_schema(formats: ImageFormatSettings) -> dict[str, Any]:
    configured = {
        "disk_format": formats.disk_formats,
        "container_format": formats.container_formats,
    }
    return {
        "name": "image",
        "properties": _properties(ImageV2, configured),
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema(formats: ImageFormatSettings) -> dict[str, Any]:
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema(formats)},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    properties = _properties(MemberV2, {})
    properties["schema"] = {"readOnly": True, "type": "string"}
    return {"name": "member", "properties": properties}


def members_schema() -> dict[str, Any]:
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def task_schema() -> dict[str, Any]:
    return {"name": "task", "properties": _properties(TaskV2, {})}


def tasks_schema() -> dict[str, Any]:
    # Items without input, result and message, as the list shows them (Glance's partial schema).
    return {
        "name": "tasks",
        "properties": {
            "tasks": {
                "type": "array",
                "items": {"name": "task", "properties": _properties(TaskStubV2, {})},
            },
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


def location_schema() -> dict[str, Any]:
    """Glance's schema of an add-location body (`{"add_location": body}` is validated)."""
    hash_value = {"type": "string", "maxLength": 128}
    return {
        "name": "location",
        "properties": {
            "add_location": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "readOnly": True},
                    "validation_data": {
                        "type": "object",
                        "writeOnly": True,
                        "additionalProperties": False,
                        "properties": {
                            "os_hash_algo": {
                                "type": "string",
                                "maxLength": 64,
                                "enum": ["sha1", "sha256", "sha512", "md5"],
                            },
                            "os_hash_value": hash_value,
                        },
                        "dependentRequired": {
                            "os_hash_value": ["os_hash_algo"],
                            "os_hash_algo": ["os_hash_value"],
                        },
                    },
                },
                "required": ["url"],
            },
        },
        "additionalProperties": {"type": "string"},
    }


def make_validator(schema: dict[str, Any]) -> ImageValidator:
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema)
    name = schema["name"]

    def validate(document: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
        if error is not None:
            raise SchemaViolation(name, str(error))

    return validate


async def get_image_validator(request: Request) -> ImageValidator:
    validate: ImageValidator = request.app.state.image_validator
    return validate


ImageValidatorDep = Annotated[ImageValidator, Depends(get_image_validator)]


# Schemas need an identity (401 without a valid one), nothing else.
router = APIRouter(prefix="/v2/schemas", tags=["schemas"], responses=error_responses(401))


def _schema_route(path: str, build_name: str) -> None:
    async def show_schema(request: Request, ctx: ContextDep) -> JSONResponse:
        del ctx  # schemas need an identity, not a role
        return JSONResponse(request.app.state.json_schemas[build_name])

    show_schema.__name__ = f"show_{build_name}_schema"
    router.add_api_route(path, show_schema, methods=["GET"], name=show_schema.__name__)


for _name in ("image", "images", "member", "members", "task", "tasks"):
    _schema_route(f"/{_name}", _name)


def build_all(formats: ImageFormatSettings) -> dict[str, dict[str, Any]]:
    return {
        "image": image_schema(formats),
        "images": images_schema(formats),
        "member": member_schema(),
        "members": members_schema(),
        "task": task_schema(),
        "tasks": tasks_schema(),
    }
