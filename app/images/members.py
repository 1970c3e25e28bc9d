"""Image sharing: members of `shared` images, their status, and who may change what."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from app.config import LimitSettings
from app.context import RequestContext
from app.db.base import utcnow
from app.db.engine import Database
from app.errors import NotFound
from app.images import policy
from app.images.attributes import MEMBER_STATUSES
from app.images.errors import (
    InvalidMemberStatus,
    MemberDuplicated,
    MembersOfUnsharedImage,
    PolicyDenied,
    QuotaExceeded,
)
from app.images.models import Image, ImageMember
from app.images.repository import ImageRepository
from app.images.service import ImageService


class MemberNotFound(NotFound):
    def __init__(self, member: str, image_id: str):
        super().__init__(f"{member} not found in the member list of the image {image_id}.")


class MemberService:
    def __init__(self, db: Database, *, limits: LimitSettings):
        self.db = db
        self.limits = limits

    def list_members(self, ctx: RequestContext, image_id: str) -> Sequence[ImageMember]:
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            image = self._image(repo, ctx, image_id, "get_members")
            if image.visibility != "shared":
                raise MembersOfUnsharedImage(
                    f"Not allowed to list members for image {image_id}: "
                    "Only shared images have members."
                )
            members = repo.list_members(image_id)
            if ctx.is_admin or policy.owns(ctx, image):
                return members
            return [m for m in members if m.member == ctx.project_id]

    def get(self, ctx: RequestContext, image_id: str, member_id: str) -> ImageMember:
        with self.db.session(write=False) as session:
            repo = ImageRepository(session)
            image = self._image(repo, ctx, image_id, "get_member")
            member = repo.find_member(image_id, member_id)
            may_see = ctx.is_admin or policy.owns(ctx, image) or member_id == ctx.project_id
            if member is None or not may_see:
                raise MemberNotFound(member_id, image_id)
            return member

    def create(self, ctx: RequestContext, image_id: str, member_id: str) -> ImageMember:
        try:
            with self.db.session() as session:
                repo = ImageRepository(session, lock=True)
                image = self._image(repo, ctx, image_id, "add_member")
                policy.require_owner_member(ctx, image, "add_member")
                if image.visibility != "shared":
                    raise MembersOfUnsharedImage(
                        f"Not allowed to create members for image {image_id}."
                    )
                if repo.find_member(image_id, member_id) is not None:
                    raise MemberDuplicated(member_id, image_id)
                count = len(repo.list_members(image_id))
                limit = self.limits.image_member_quota
                if 0 <= limit <= count:
                    raise QuotaExceeded(
                        "The limit has been exceeded on the number of allowed image members "
                        f"for this image. Attempted: {count + 1}, Maximum: {limit}"
                    )
                member = ImageMember(image_id=image_id, member=member_id)
                session.add(member)
                session.flush()
                return member
        except IntegrityError as exc:  # the same member added concurrently
            raise MemberDuplicated(member_id, image_id) from exc

    def update(
        self, ctx: RequestContext, image_id: str, member_id: str, status: object
    ) -> ImageMember:
        if status not in MEMBER_STATUSES:
            raise InvalidMemberStatus()
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self._image(repo, ctx, image_id, "modify_member")
            member = repo.find_member(image_id, member_id)
            if member is None:
                raise MemberNotFound(member_id, image_id)
            if not ctx.is_admin and member_id != ctx.project_id:
                if policy.owns(ctx, image):
                    raise PolicyDenied("modify_member")
                raise MemberNotFound(member_id, image_id)
            member.status = str(status)
            member.updated_at = utcnow()
            session.add(member)
            return member

    def delete(self, ctx: RequestContext, image_id: str, member_id: str) -> None:
        with self.db.session() as session:
            repo = ImageRepository(session, lock=True)
            image = self._image(repo, ctx, image_id, "delete_member")
            policy.require_owner_member(ctx, image, "delete_member")
            member = repo.find_member(image_id, member_id)
            if member is None:
                raise MemberNotFound(member_id, image_id)
            session.delete(member)

    @staticmethod
    def _image(repo: ImageRepository, ctx: RequestContext, image_id: str, action: str) -> Image:
        policy.require_reader(ctx, action)
        return ImageService.visible_image(repo, ctx, image_id)
