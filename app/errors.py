"""Domain errors. Each carries its HTTP status and the message Glance gives for the same case."""

from __future__ import annotations


class GlintError(Exception):
    status_code = 500
    # webob's default explanation for the status, used when no message is given
    message = "The server has either erred or is incapable of performing the requested operation."

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: str = "",
        headers: dict[str, str] | None = None,
    ):
        """`message` is webob's explanation; `detail` the second line some Glance errors add."""
        if message is not None:
            self.message = message
        self.detail = detail
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(GlintError):
    status_code = 400
    message = (
        "The server could not comply with the request since it is either malformed or "
        "otherwise incorrect."
    )


class Unauthorized(GlintError):
    status_code = 401
    message = (
        "This server could not verify that you are authorized to access the document you "
        "requested. Either you supplied the wrong credentials (e.g., bad password), or your "
        "browser does not understand how to supply the credentials required."
    )


class Forbidden(GlintError):
    status_code = 403
    message = "Access was denied to this resource."


class NotFound(GlintError):
    status_code = 404
    message = "The resource could not be found."


class MethodNotAllowed(GlintError):
    status_code = 405


class Conflict(GlintError):
    status_code = 409
    message = "There was a conflict when trying to complete your request."


class PayloadTooLarge(GlintError):
    status_code = 413
    message = "The body of your request was too large for this server."


class UnsupportedMediaType(GlintError):
    status_code = 415

    def __init__(self, content_type: str, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(
            f"The request media type {content_type} is not supported by this server.",
            detail=detail,
            headers=headers,
        )


class HeaderFieldsTooLarge(GlintError):
    status_code = 431
    message = "The request header fields were too large"


class ServiceUnavailable(GlintError):
    status_code = 503
    message = "The server is currently unavailable. Please try again at a later time."
