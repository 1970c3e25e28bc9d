"""`/v2/images/{image_id}/file`: upload and download image data, streamed both ways; and
`/v2/images/{image_id}/stage`, the upload of a glance-direct import."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from app.api import multipart, transfer_encoding
from app.api.deps import ContextDep, ImageDataServiceDep
from app.api.ranges import legacy_content_range, parse_range
from app.api.v2.responses import ERROR_RESPONSES, error_responses
from app.errors import BadRequest, UnsupportedMediaType
from app.images.data import ImageDataMissing
from app.images.formats import UnsafeImage

router = APIRouter(prefix="/v2/images/{image_id}/file", tags=["images"], responses=ERROR_RESPONSES)
staging_router = APIRouter(
    prefix="/v2/images/{image_id}/stage", tags=["imports"], responses=ERROR_RESPONSES
)

OCTET_STREAM = "application/octet-stream"
_BINARY = {"type": "string", "format": "binary"}
# Only the raw body is documented: Swagger UI offers a file picker for it, and a second media
# type breaks generated clients (openapi-python-client 0.29 then emits code that cannot import).
# A `multipart/form-data` body with one file part is accepted too, for plain browser forms.
_RAW_BODY = {"required": True, "content": {OCTET_STREAM: {"schema": _BINARY}}}
_SIZE_HEADER = {
    "name": "x-openstack-image-size",
    "in": "header",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "The image's size in bytes, for a chunked upload: a body of "
    "another length fails (400) and leaves the image queued.",
}
_TRANSFER_ENCODING_HEADER = {
    "name": "Content-Transfer-Encoding",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["base64", "binary", "8bit", "7bit"]},
    "description": "`base64`: the body is the image base64-encoded (line breaks allowed), "
    "decoded as it arrives; the stored bytes, size and checksum are the decoded image's. Give "
    "the image's size, if at all, in x-openstack-image-size. Text that is not base64 is 400.",
}
_UPLOAD = {
    "requestBody": _RAW_BODY,
    "parameters": [
        _SIZE_HEADER,
        _TRANSFER_ENCODING_HEADER,
        {
            "name": "X-Image-Meta-Store",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "The store to upload to (default storage.default).",
        },
    ],
}
# Staged data goes to the staging store (the default store) whatever the import's targets.
_STAGE = {"requestBody": _RAW_BODY, "parameters": [_SIZE_HEADER, _TRANSFER_ENCODING_HEADER]}
_DOWNLOAD = {
    "parameters": [
        {
            "name": "Range",
            "in": "header",
            "required": False,
            # No pattern: an image without data answers 204 whatever the header says, as
            # Glance does.
            "schema": {"type": "string"},
            "description": "One byte range, `bytes=first-last`, `bytes=first-` or "
            "`bytes=-suffix` (206); a malformed one, or one that does not overlap the data, "
            "is 416.",
        },
    ]
}
_CHECKSUM_HEADER = {
    "Content-MD5": {"description": "The image's md5 checksum", "schema": {"type": "string"}}
}


def _size_header(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not value.strip().isdigit():
        raise BadRequest(f"Invalid {name} header: {value!r}")
    return int(value)


def _image_size_header(request: Request) -> int | None:
    return _size_header(request, "x-openstack-image-size")


def _declared_size(request: Request) -> int | None:
    """`x-openstack-image-size` (what glanceclient sends with chunked uploads), else
    Content-Length; when both are given they must agree."""
    declared = _image_size_header(request)
    length = _size_header(request, "content-length")
    if declared is not None and length is not None and declared != length:
        raise BadRequest("x-openstack-image-size does not match Content-Length.")
    return declared if declared is not None else length


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise BadRequest("The client disconnected before the whole image was received.") from None


def _upload_body(request: Request) -> tuple[AsyncIterator[bytes], int | None]:
    """The image bytes of an upload or stage request, and their declared size."""
    content_type = request.headers.get("content-type") or ""
    base64 = transfer_encoding.is_base64(request.headers.get("content-transfer-encoding"))
    body = _body(request)
    form_boundary = multipart.boundary(content_type)
    if form_boundary is not None:
        body = multipart.file_part(body, form_boundary)
    elif content_type.split(";", 1)[0].strip().lower() != OCTET_STREAM:
        shown = content_type or "None"
        raise UnsupportedMediaType(shown, f"Invalid content type {shown}")
    if form_boundary is not None or base64:
        # Content-Length counts the form's framing, or the encoded text: only
        # x-openstack-image-size can tell the image's own size.
        expected_size = _image_size_header(request)
    else:
        expected_size = _declared_size(request)
    if base64:
        body = transfer_encoding.decoded(body)
    return body, expected_size


@router.put(
    "",
    status_code=204,
    openapi_extra=_UPLOAD,
    responses=error_responses(
        404,
        408,
        409,
        410,
        413,
        (415, "Not application/octet-stream, or an unsafe or mismatched disk image"),
        (503, "The store failed"),
    ),
)
async def upload_image_data(
    image_id: str, request: Request, ctx: ContextDep, data: ImageDataServiceDep
) -> Response:
    body, expected_size = _upload_body(request)
    try:
        await data.upload(
            ctx,
            image_id,
            body,
            expected_size=expected_size,
            store_id=request.headers.get("x-image-meta-store"),
        )
    except UnsafeImage as error:
        # webob's 415 body: the media-type line, then the reason (as Glance sends it).
        raise UnsupportedMediaType(OCTET_STREAM, error.reason) from error
    return Response(status_code=204)


@staging_router.put(
    "",
    status_code=204,
    openapi_extra=_STAGE,
    responses=error_responses(
        (404, "No such image, or glance-direct import is not enabled"),
        408,
        409,
        410,
        413,
        (415, "Not application/octet-stream"),
        (503, "The store failed"),
    ),
)
async def stage_image_data(
    image_id: str, request: Request, ctx: ContextDep, data: ImageDataServiceDep
) -> Response:
    """Stages the image's data for a `glance-direct` import: the image becomes `uploading`.
    What inspecting the data finds is reported by the import."""
    body, expected_size = _upload_body(request)
    await data.stage(ctx, image_id, body, expected_size=expected_size)
    return Response(status_code=204)


@router.get(
    "",
    response_class=StreamingResponse,
    openapi_extra=_DOWNLOAD,
    responses={
        200: {
            "description": "The image's data",
            "content": {OCTET_STREAM: {"schema": _BINARY}},
            "headers": _CHECKSUM_HEADER,
        },
        204: {"description": "The image has no data yet"},
        206: {
            "description": "The requested range",
            "content": {OCTET_STREAM: {"schema": _BINARY}},
            "headers": {
                **_CHECKSUM_HEADER,
                "Content-Range": {
                    "description": "`bytes first-last/size`",
                    "schema": {"type": "string"},
                },
            },
        },
        **error_responses(404, 416, (503, "The store failed before the first byte")),
    },
)
async def download_image_data(
    image_id: str, request: Request, ctx: ContextDep, data: ImageDataServiceDep
) -> Response:
    range_header = request.headers.get("range") or legacy_content_range(
        request.headers.get("content-range")
    )
    image_data = await data.find_data(ctx, image_id)
    if image_data is None:
        return Response(status_code=204)
    byte_range = parse_range(range_header, image_data.size)
    headers = {"Content-Type": OCTET_STREAM}
    if image_data.checksum:
        headers["Content-MD5"] = image_data.checksum
    try:
        if byte_range is None:
            status_code, length = 200, image_data.size
            chunks = await image_data.open()
        else:
            status_code, length = 206, byte_range.length
            headers["Content-Range"] = byte_range.content_range(image_data.size)
            chunks = await image_data.open(byte_range.start, byte_range.length)
    except ImageDataMissing:
        return Response(status_code=204)
    headers["Content-Length"] = str(length)
    return StreamingResponse(chunks, status_code=status_code, headers=headers)
