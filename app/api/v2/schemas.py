"""v2 wire models. They drive the OpenAPI document and the Glance-style JSON schemas served at
/v2/schemas/*, which python-glanceclient validates every response against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from app.config import CONTAINER_FORMATS, DISK_FORMATS
from app.images.locations import by_weight
from app.images.models import ImageLocation, ImageMember
from app.images.repository import ImageRecord
from app.images.service import MAX_INTEGER, MAX_PROPERTY_NAME, MAX_PROPERTY_VALUE
from app.images.status import ImageStatus
from app.images.stores import StoreEntry
from app.tasks.models import TaskStatus
from app.tasks.query import TYPES

UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)
# The OpenAPI document lists the default formats; /v2/schemas/image lists the configured ones
# (json_schemas replaces these by field name).
DISK_FORMAT_ENUM: list[JsonValue] = [None, *DISK_FORMATS]
CONTAINER_FORMAT_ENUM: list[JsonValue] = [None, *CONTAINER_FORMATS]


LOCATION_ITEM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "maxLength": 255},
        "metadata": {"type": "object"},
        "validation_data": {
            "description": "Values to be used to populate the corresponding image properties. "
            "If the image status is not 'queued', values must exactly match those already "
            "contained in the image properties.",
            "type": "object",
            "writeOnly": True,
            "additionalProperties": False,
            "properties": {
                "checksum": {"type": "string", "minLength": 32, "maxLength": 32},
                "os_hash_algo": {"type": "string", "maxLength": 64},
                "os_hash_value": {"type": "string", "maxLength": 128},
            },
            "required": ["os_hash_algo", "os_hash_value"],
        },
    },
    "required": ["url", "metadata"],
}


def _ro(description: str, *, alias: str | None = None, default: Any = ..., **extra: Any) -> Any:
    """A read-only field: shown in responses, refused in requests."""
    return Field(
        default,
        alias=alias,
        description=description,
        json_schema_extra={"readOnly": True, **extra},
    )


class ImageV2(BaseModel):
    """An image as every v2 response shows it; custom properties appear as extra string fields."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, title="ImageV2")

    id: str = Field(description="An identifier for the image", pattern=UUID_PATTERN)
    name: str | None = Field(description="Descriptive name for the image", max_length=255)
    status: ImageStatus = _ro("Status of the image")
    visibility: Literal["community", "public", "private", "shared"] = Field(
        description="Scope of image accessibility"
    )
    protected: bool = Field(description="If true, image will not be deletable.")
    os_hidden: bool = Field(
        description="If true, image will not appear in default image list response."
    )
    checksum: str | None = _ro("md5 hash of image contents.", maxLength=32)
    os_hash_algo: str | None = _ro("Algorithm to calculate the os_hash_value", maxLength=64)
    os_hash_value: str | None = _ro(
        "Hexdigest of the image contents using the algorithm specified by the os_hash_algo",
        maxLength=128,
    )
    owner: str | None = Field(description="Owner of the image", max_length=255)
    size: int | None = _ro("Size of image file in bytes")
    virtual_size: int | None = _ro("Virtual size of image in bytes")
    container_format: str | None = Field(
        description="Format of the container", json_schema_extra={"enum": CONTAINER_FORMAT_ENUM}
    )
    disk_format: str | None = Field(
        description="Format of the disk", json_schema_extra={"enum": DISK_FORMAT_ENUM}
    )
    created_at: str = _ro("Date and time of image registration")
    updated_at: str = _ro("Date and time of the last image modification")
    tags: list[str] = Field(
        description="List of strings related to the image",
        json_schema_extra={"items": {"type": "string", "maxLength": 255}},
    )
    # Shown only when an operator enables it; never null when shown.
    direct_url: str = _ro("URL to access the image file kept in external store", default=None)
    min_ram: int = Field(description="Amount of ram (in MB) required to boot image.")
    min_disk: int = Field(description="Amount of disk space (in GB) required to boot image.")
    self_: str = _ro("An image self url", alias="self")
    file: str = _ro("An image file url")
    stores: str = _ro(
        "Store in which image data resides.  Only present when the operator has enabled "
        "multiple stores.  May be a comma-separated list of store identifiers.",
        default=None,
    )
    schema_: str = _ro("An image schema url", alias="schema")
    locations: list[dict[str, Any]] = Field(
        default=None,  # type: ignore[arg-type]  # shown only when enabled, never null
        description="A set of URLs to access the image file kept in external store",
        json_schema_extra={"items": LOCATION_ITEM},
    )


# What the server enforces on a custom property (app.images.service checks it), for the
# request models.
_CUSTOM_PROPERTY: dict[str, JsonValue] = {"type": "string", "maxLength": MAX_PROPERTY_VALUE}
_CUSTOM_PROPERTY_NAME: dict[str, JsonValue] = {"minLength": 1, "maxLength": MAX_PROPERTY_NAME}
_NULLABLE_DISK_FORMAT: dict[str, JsonValue] = {"enum": DISK_FORMAT_ENUM}
_NULLABLE_CONTAINER_FORMAT: dict[str, JsonValue] = {"enum": CONTAINER_FORMAT_ENUM}


def _no_default(schema: dict[str, JsonValue]) -> None:
    schema.pop("default")


_ATTRIBUTE_INTEGER = Field(default=0, ge=0, le=MAX_INTEGER)


class ImageCreateV2(BaseModel):
    """Body of `POST /v2/images`. Any other key is a custom property with a string value."""

    model_config = ConfigDict(
        extra="allow",
        title="ImageCreateV2",
        json_schema_extra={
            "additionalProperties": _CUSTOM_PROPERTY,
            "propertyNames": _CUSTOM_PROPERTY_NAME,
        },
    )

    # Chosen by the caller, or generated; never null.
    id: str = Field(
        default=None,  # type: ignore[assignment]
        pattern=UUID_PATTERN,
        json_schema_extra=_no_default,
    )
    name: str | None = Field(default=None, max_length=255)
    visibility: Literal["community", "public", "private", "shared"] = "shared"
    protected: bool = False
    os_hidden: bool = False
    owner: str | None = Field(default=None, max_length=255)
    container_format: str | None = Field(default=None, json_schema_extra=_NULLABLE_CONTAINER_FORMAT)
    disk_format: str | None = Field(default=None, json_schema_extra=_NULLABLE_DISK_FORMAT)
    min_ram: int = _ATTRIBUTE_INTEGER
    min_disk: int = _ATTRIBUTE_INTEGER
    tags: list[Annotated[str, StringConstraints(max_length=255)]] = Field(default_factory=list)


class ImagesV2(BaseModel):
    model_config = ConfigDict(title="ImagesV2")

    images: list[ImageV2]
    first: str
    next: str | None = None
    schema_: str = Field(alias="schema")


# Pointer to a top-level attribute: `~0` and `~1` are the only escapes (RFC 6901); at most the
# 255 characters of a property name.
_ATTRIBUTE_POINTER = r"^/([^/~]|~[01])+$"


def patch_operation_schemas() -> dict[str, dict[str, Any]]:
    """The schemas of a v2.1 JSON-patch operation, as OpenAPI components: one per writable
    attribute (its value as the create body's), one for custom properties, one for `remove`,
    and `PatchOperationV2`, any of them. Derived from ImageCreateV2, so the two agree."""
    create = ImageCreateV2.model_json_schema()
    writable = {name: value for name, value in create["properties"].items() if name != "id"}
    set_op = {"$ref": "#/components/schemas/ImagePatchSetOp"}
    any_attribute = {
        "type": "string",
        "pattern": _ATTRIBUTE_POINTER,
        "maxLength": MAX_PROPERTY_NAME + 1,
    }
    variants: dict[str, dict[str, Any]] = {}
    for name, value in writable.items():
        value = {k: v for k, v in value.items() if k not in ("default", "title")}
        variants[f"ImagePatch{name.title().replace('_', '')}"] = _patch_operation(
            set_op, {"type": "string", "const": f"/{name}"}, value
        )
    core_paths = [f"/{name}" for name in writable]
    variants["ImagePatchCustomProperty"] = _patch_operation(
        set_op, {**any_attribute, "not": {"enum": core_paths}}, _CUSTOM_PROPERTY
    )
    variants["ImagePatchRemove"] = _patch_operation(
        {"type": "string", "const": "remove"}, any_attribute, None
    )
    # With `show_multiple_locations` only (403 otherwise).
    location_position = {"type": "string", "pattern": "^/locations/(-|[0-9]+)$"}
    variants["ImagePatchAddLocation"] = _patch_operation(
        {"type": "string", "const": "add"}, location_position, LOCATION_ITEM
    )
    variants["ImagePatchRemoveLocation"] = _patch_operation(
        {"type": "string", "const": "remove"}, location_position, None
    )
    variants["ImagePatchReplaceLocations"] = _patch_operation(
        {"type": "string", "const": "replace"},
        {"type": "string", "const": "/locations"},
        {"type": "array", "items": LOCATION_ITEM, "minItems": 1},
    )
    return {
        "ImagePatchSetOp": {"type": "string", "enum": ["add", "replace"]},
        **variants,
        "PatchOperationV2": {
            "title": "PatchOperationV2",
            "description": "One operation of an `application/openstack-images-v2.1-json-patch` "
            "body: set (`add`, `replace`) an attribute or a custom property, or `remove` one; "
            "or add, remove or replace locations.",
            "anyOf": [{"$ref": f"#/components/schemas/{name}"} for name in variants],
        },
    }


def _patch_operation(
    op: dict[str, Any], path: dict[str, Any], value: dict[str, Any] | None
) -> dict[str, Any]:
    properties: dict[str, Any] = {"op": op, "path": path}
    if value is not None:
        properties["value"] = value
    return {"type": "object", "properties": properties, "required": list(properties)}


class MemberV2(BaseModel):
    model_config = ConfigDict(populate_by_name=True, title="MemberV2")

    member_id: str = Field(description="An identifier for the image member (tenantId)")
    image_id: str = Field(description="An identifier for the image", pattern=UUID_PATTERN)
    created_at: str = Field(description="Date and time of image member creation")
    updated_at: str = Field(description="Date and time of last modification of image member")
    status: Literal["pending", "accepted", "rejected"] = Field(
        description="The status of this image member"
    )
    schema_: str = Field(alias="schema", json_schema_extra={"readOnly": True})


class MembersV2(BaseModel):
    model_config = ConfigDict(title="MembersV2")

    members: list[MemberV2]
    schema_: str = Field(alias="schema")


class MemberCreateV2(BaseModel):
    model_config = ConfigDict(title="MemberCreateV2")

    member: str = Field(min_length=1, max_length=255)


class MemberUpdateV2(BaseModel):
    model_config = ConfigDict(title="MemberUpdateV2")

    status: Literal["pending", "accepted", "rejected"]


class LocationV2(BaseModel):
    model_config = ConfigDict(title="LocationV2")

    url: str
    metadata: dict[str, Any] = Field(
        description="What was said about the location; with several stores, `store` names "
        "the store holding it."
    )


def omittable(description: str, **extra: Any) -> Any:
    """A field left out when it does not apply, never null."""
    return Field(None, description=description, **extra)


class LocationValidationDataV2(BaseModel):
    model_config = ConfigDict(
        title="LocationValidationDataV2",
        extra="forbid",
        json_schema_extra={
            "dependentRequired": {
                "os_hash_value": ["os_hash_algo"],
                "os_hash_algo": ["os_hash_value"],
            }
        },
    )

    os_hash_algo: Literal["sha1", "sha256", "sha512", "md5"] = omittable(
        "Needed with os_hash_value"
    )
    os_hash_value: str = omittable("Needed with os_hash_algo", max_length=128)


class LocationCreateV2(BaseModel):
    """Body of `POST /v2/images/{image_id}/locations`."""

    model_config = ConfigDict(title="LocationCreateV2")

    url: str = Field(description="Where the image's data is, in a configured store")
    validation_data: LocationValidationDataV2 = omittable(
        "The hash the data must have; it is computed either way."
    )


class StoreV2(BaseModel):
    model_config = ConfigDict(title="StoreV2", populate_by_name=True)

    id: str
    description: str = omittable("Shown only when configured")
    default: Literal["true"] = omittable("Only on the default store")
    read_only: Literal["true"] = omittable(
        "Only on stores that take no image data", alias="read-only"
    )


class StoresV2(BaseModel):
    model_config = ConfigDict(title="StoresV2")

    stores: list[StoreV2]


class StoreDetailV2(StoreV2):
    model_config = ConfigDict(title="StoreDetailV2", populate_by_name=True)

    type: Literal["file", "swift", "s3", "http"]
    weight: int = Field(description="Reads prefer the locations of heavier stores")
    properties: dict[str, Any] = Field(description="The store's settings by Glance's names")


class StoreDetailsV2(BaseModel):
    model_config = ConfigDict(title="StoreDetailsV2")

    stores: list[StoreDetailV2]


def store_to_wire(entry: StoreEntry, *, detailed: bool = False) -> dict[str, Any]:
    """A store as `GET /v2/info/stores` (and `/detail`) shows it, in Glance's key order."""
    body: dict[str, Any] = {"id": entry.store_id}
    if entry.info.description:
        body["description"] = entry.info.description
    if entry.is_default:
        body["default"] = "true"
    if entry.is_read_only:
        body["read-only"] = "true"
    if detailed:
        body["type"] = entry.info.type
        body["properties"] = entry.info.properties
        body["weight"] = entry.info.weight
    return body


@dataclass(frozen=True)
class ImageView:
    """What the operator lets image responses show about where data lives."""

    show_locations: bool
    show_direct_url: bool
    multistore: bool
    store_weight: Callable[[str], int]

    def location(self, location: ImageLocation) -> dict[str, Any]:
        metadata = dict(location.location_metadata)
        if self.multistore:
            metadata["store"] = location.store_id
        return {"url": location.url, "metadata": metadata}


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_to_wire(record: ImageRecord, view: ImageView) -> dict[str, Any]:
    """The response body of an image, in Glance's key order (custom properties first)."""
    image = record.image
    href = f"/v2/images/{image.id}"
    where: dict[str, Any] = {}
    if view.show_locations:
        where["locations"] = [view.location(location) for location in record.locations]
    if view.show_direct_url and record.locations:
        where["direct_url"] = by_weight(record.locations, view.store_weight)[0].url
    if view.multistore and record.locations:
        stores = {"stores": ",".join(location.store_id for location in record.locations)}
    else:
        stores = {}
    return {
        **record.properties,
        "name": image.name,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "visibility": image.visibility,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "status": image.status,
        "checksum": image.checksum,
        "protected": image.protected,
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "owner": image.owner,
        "os_hidden": image.os_hidden,
        "os_hash_algo": image.os_hash_algo,
        "os_hash_value": image.os_hash_value,
        "id": image.id,
        "created_at": timestamp(image.created_at),
        "updated_at": timestamp(image.updated_at),
        **where,
        "tags": record.tags,
        "self": href,
        "file": f"{href}/file",
        "schema": "/v2/schemas/image",
        **stores,
    }


def member_to_wire(member: ImageMember) -> dict[str, Any]:
    return {
        "member_id": member.member,
        "image_id": member.image_id,
        "status": member.status,
        "created_at": timestamp(member.created_at),
        "updated_at": timestamp(member.updated_at),
        "schema": "/v2/schemas/member",
    }


class ImportMethodV2(BaseModel):
    model_config = ConfigDict(title="ImportMethodV2")

    name: Literal["glance-direct", "web-download", "copy-image"] = Field(
        description="How the data arrives: staged with `PUT .../stage`, downloaded from `uri`, "
        "or copied from the image's stores into more stores"
    )
    uri: str = omittable("web-download: the http(s) URL to download (import.* filtering)")


class ImageImportV2(BaseModel):
    """Body of `POST /v2/images/{image_id}/import`."""

    model_config = ConfigDict(title="ImageImportV2")

    method: ImportMethodV2
    stores: list[str] = omittable("Multi-store: the stores to import into")
    all_stores: bool = omittable("Multi-store: every writable store (default false)")
    all_stores_must_succeed: bool = omittable(
        "Multi-store: false lets the image become active once one store has it (default true)"
    )


class ImportMethodsValueV2(BaseModel):
    model_config = ConfigDict(title="ImportMethodsValueV2")

    description: str
    type: Literal["array"]
    value: list[str]


class ImportInfoV2(BaseModel):
    model_config = ConfigDict(title="ImportInfoV2", populate_by_name=True)

    import_methods: ImportMethodsValueV2 = Field(alias="import-methods")


# --- tasks (these also make /v2/schemas/task and /v2/schemas/tasks) -------------------------


class TaskStubV2(BaseModel):
    """A task as lists show it; the fields are those of Glance's partial task schema."""

    model_config = ConfigDict(populate_by_name=True, title="TaskStubV2")

    id: str = Field(description="An identifier for the task", pattern=UUID_PATTERN)
    type: str = Field(
        description="The type of task represented by this content",
        json_schema_extra={"enum": list(TYPES)},
    )
    status: TaskStatus = Field(description="The current status of this task")
    owner: str = Field(description="An identifier for the owner of this task")
    image_id: str = omittable("Image associated with the task")
    request_id: str = omittable("Human-readable informative request-id")
    user_id: str = omittable("User associated with the task")
    expires_at: str | None = omittable("Datetime when this resource would be subject to removal")
    created_at: str = Field(description="Datetime when this resource was created")
    updated_at: str = Field(description="Datetime when this resource was updated")
    self_: str = Field(alias="self", json_schema_extra={"readOnly": True})
    schema_: str = Field(alias="schema", json_schema_extra={"readOnly": True})


class TaskV2(TaskStubV2):
    model_config = ConfigDict(populate_by_name=True, title="TaskV2")

    input: dict[str, Any] | None = Field(description="The parameters required by task, JSON blob")
    result: dict[str, Any] | None = Field(description="The result of current task, JSON blob")
    message: str = Field(
        description="Human-readable informative message only included when appropriate "
        "(usually on failure)"
    )


class TasksV2(BaseModel):
    model_config = ConfigDict(title="TasksV2")

    tasks: list[TaskStubV2]
    first: str
    next: str | None = None
    schema_: str = Field(alias="schema")


class ImageTaskV2(BaseModel):
    """A task as `GET /v2/images/{image_id}/tasks` shows it: Glance's database row, with its
    times to the microsecond and without a zone."""

    model_config = ConfigDict(title="ImageTaskV2")

    id: str
    type: str
    status: TaskStatus
    owner: str | None
    expires_at: str | None
    created_at: str
    updated_at: str
    deleted_at: str | None
    deleted: bool
    image_id: str | None
    request_id: str | None
    user_id: str | None
    input: dict[str, Any]
    result: dict[str, Any] | None
    message: str


class ImageTasksV2(BaseModel):
    model_config = ConfigDict(title="ImageTasksV2")

    tasks: list[ImageTaskV2]
