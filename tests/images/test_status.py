"""The image state machine, checked pair by pair against Glance's table (glance-features C)."""

from __future__ import annotations

import itertools

import pytest

from app.images.errors import InvalidImageTransition
from app.images.status import IMAGE_TRANSITIONS, ImageStatus, can_transition, check_transition

S = ImageStatus
# Written out independently of app.images.status, from ../shared/spec/glance-features.md (C).
ALLOWED = {
    (S.QUEUED, S.SAVING),  # PUT /file starts; v1 upload
    (S.SAVING, S.ACTIVE),  # data written
    (S.SAVING, S.QUEUED),  # v2 upload failure restores queued
    (S.SAVING, S.KILLED),  # v1 upload failure
    (S.QUEUED, S.KILLED),  # v1 bad Content-Type / failed copy_from
    (S.QUEUED, S.UPLOADING),  # stage
    (S.UPLOADING, S.QUEUED),  # stage failure
    (S.UPLOADING, S.IMPORTING),  # glance-direct import
    (S.QUEUED, S.IMPORTING),  # web-download, location import
    (S.IMPORTING, S.ACTIVE),
    (S.IMPORTING, S.QUEUED),  # import reverted
    (S.QUEUED, S.ACTIVE),  # locations; v1 zero size or external location
    (S.ACTIVE, S.DEACTIVATED),
    (S.DEACTIVATED, S.ACTIVE),
    (S.ACTIVE, S.PENDING_DELETE),  # delayed delete
    (S.PENDING_DELETE, S.DELETED),  # scrubber
    (S.PENDING_DELETE, S.ACTIVE),  # scrubber --restore
    *(
        (status, S.DELETED)
        for status in (
            S.QUEUED,
            S.SAVING,
            S.UPLOADING,
            S.IMPORTING,
            S.ACTIVE,
            S.DEACTIVATED,
            S.KILLED,
        )
    ),
}


@pytest.mark.parametrize(("from_", "to"), list(itertools.product(ImageStatus, repeat=2)))
def test_every_pair(from_: ImageStatus, to: ImageStatus) -> None:
    expected = (from_, to) in ALLOWED
    assert can_transition(from_, to) is expected
    if expected:
        check_transition(from_, to)
    else:
        with pytest.raises(InvalidImageTransition) as raised:
            check_transition(from_, to)
        assert raised.value.message == (
            f"Image status transition from {from_} to {to} is not allowed"
        )
        assert raised.value.status_code == 409


def test_table_covers_every_status_and_deleted_is_terminal() -> None:
    assert set(IMAGE_TRANSITIONS) == set(ImageStatus)
    assert IMAGE_TRANSITIONS[S.DELETED] == frozenset()
