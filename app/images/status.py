"""Image status values and the transitions between them, as Glance's domain allows."""

from __future__ import annotations

from enum import StrEnum

from app.images.errors import InvalidImageTransition


class ImageStatus(StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"
    UPLOADING = "uploading"
    IMPORTING = "importing"
    PENDING_DELETE = "pending_delete"
    DEACTIVATED = "deactivated"


S = ImageStatus

# From glance/domain Image.valid_state_targets, plus v1's data paths (saving -> killed on a failed
# upload, queued -> active for a zero-size or external-location image).
IMAGE_TRANSITIONS: dict[ImageStatus, frozenset[ImageStatus]] = {
    S.QUEUED: frozenset({S.SAVING, S.UPLOADING, S.IMPORTING, S.ACTIVE, S.KILLED, S.DELETED}),
    S.SAVING: frozenset({S.ACTIVE, S.QUEUED, S.KILLED, S.DELETED}),
    S.UPLOADING: frozenset({S.IMPORTING, S.QUEUED, S.DELETED}),
    S.IMPORTING: frozenset({S.ACTIVE, S.QUEUED, S.DELETED}),
    S.ACTIVE: frozenset({S.DEACTIVATED, S.PENDING_DELETE, S.DELETED}),
    S.DEACTIVATED: frozenset({S.ACTIVE, S.DELETED}),
    S.KILLED: frozenset({S.DELETED}),
    S.PENDING_DELETE: frozenset({S.DELETED, S.ACTIVE}),
    S.DELETED: frozenset(),
}

# Statuses in which an image holds (or is receiving) no data yet.
WITHOUT_DATA = frozenset({S.QUEUED, S.SAVING, S.UPLOADING, S.IMPORTING})
# Never shown by the v2 API: such images answer 404 and are left out of lists.
INVISIBLE = frozenset({S.DELETED, S.PENDING_DELETE})


def can_transition(from_: ImageStatus, to: ImageStatus) -> bool:
    return to in IMAGE_TRANSITIONS[from_]


def check_transition(from_: ImageStatus, to: ImageStatus) -> None:
    if not can_transition(from_, to):
        raise InvalidImageTransition(from_.value, to.value)
