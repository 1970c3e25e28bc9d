"""The image domain's named errors: what went wrong, in Glance's wording, with the HTTP status
Glance answers (the API layer renders them)."""

from __future__ import annotations

from app.errors import Conflict, Forbidden, NotFound, PayloadTooLarge


class ImageNotFound(NotFound):
    def __init__(self, image_id: str):
        super().__init__(f"No image found with ID {image_id}")


class PolicyDenied(Forbidden):
    def __init__(self, action: str):
        self.action = action
        super().__init__(f"You are not authorized to complete {action} action.")


class ReadOnlyAttribute(Forbidden):
    def __init__(self, attribute: str):
        super().__init__(f"Attribute '{attribute}' is read-only.")


class InvalidImageTransition(Conflict):
    def __init__(self, from_: str, to: str):
        super().__init__(f"Image status transition from {from_} to {to} is not allowed")


class ImageIdTaken(Conflict):
    def __init__(self, image_id: str):
        super().__init__(f"Image ID {image_id} already exists!")


class QuotaExceeded(PayloadTooLarge):
    pass
