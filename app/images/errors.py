"""The image domain's named errors: what went wrong, in Glance's wording, with the HTTP status
Glance answers (the API layer renders them)."""

from __future__ import annotations

from app.errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge


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


class ReservedAttribute(Forbidden):
    def __init__(self, name: str):
        super().__init__(detail=f"Attribute '{name}' is reserved.")


class UnknownMarker(BadRequest):
    def __init__(self, marker: str):
        super().__init__(f"No image found with ID {marker}")


class ForeignOwner(Forbidden):
    def __init__(self, owner: str | None):
        super().__init__(detail=f"You are not permitted to create images owned by '{owner}'")


class OwnerChangeDenied(Forbidden):
    def __init__(self) -> None:
        super().__init__(detail="Owner can't be updated by non admin.")


class FormatChangeDenied(Forbidden):
    def __init__(self, name: str):
        super().__init__(f"Attribute '{name}' can be only replaced for a queued image.")


class CoreAttributeRemoval(Forbidden):
    def __init__(self, name: str):
        super().__init__(detail=f"Property {name} may not be removed.")


class PropertyExists(Conflict):
    def __init__(self, name: str):
        super().__init__(detail=f"Property {name} already present.")


class PropertyMissing(Conflict):
    def __init__(self, name: str):
        super().__init__(detail=f"Property {name} does not exist.")


class InvalidAttributeValue(BadRequest):
    def __init__(self, name: str, value: object, reason: str):
        super().__init__(f"Invalid value '{value}' for parameter '{name}': {reason}")


class PropertyTooLong(BadRequest):
    pass


class ImageProtected(Forbidden):
    def __init__(self, image_id: str):
        super().__init__(f"Image {image_id} is protected and cannot be deleted.")


class ImageChanged(Conflict):
    """A compare-and-set lost to a concurrent change of the same image."""

    def __init__(self, image_id: str, doing: str):
        super().__init__(f"Image {image_id} changed while {doing}; retry.")


class StatusActionRefused(Forbidden):
    def __init__(self, action: str, status: str):
        super().__init__(f"Not allowed to {action} image in status '{status}'")


class TagNotFound(NotFound):
    pass


class MembersOfUnsharedImage(Forbidden):
    pass


class MemberDuplicated(Conflict):
    def __init__(self, member_id: str, image_id: str):
        super().__init__(f"Member {member_id} is duplicated for image {image_id}")


class InvalidMemberStatus(BadRequest):
    def __init__(self) -> None:
        super().__init__('Incorrect request: Status must be "pending", "accepted" or "rejected".')
