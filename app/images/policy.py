"""Who may do what to an image: Glance's secure-RBAC defaults, in one place.

reader reads, member writes (in its own project), admin sees and does everything. Images a
caller may not see are reported as missing (404), never as forbidden.
"""

from __future__ import annotations

from app.context import RequestContext
from app.images.errors import PolicyDenied
from app.images.models import Image


def require_reader(ctx: RequestContext, action: str) -> None:
    if not ctx.is_reader:
        raise PolicyDenied(action)


def require_member(ctx: RequestContext, action: str) -> None:
    if not ctx.is_member:
        raise PolicyDenied(action)


def require_admin(ctx: RequestContext, action: str) -> None:
    if not ctx.is_admin:
        raise PolicyDenied(action)


def require_service(ctx: RequestContext, action: str) -> None:
    if not ctx.is_service:
        raise PolicyDenied(action)


def owns(ctx: RequestContext, image: Image) -> bool:
    return ctx.project_id is not None and image.owner == ctx.project_id


def can_see(ctx: RequestContext, image: Image, *, is_member_of: bool) -> bool:
    """`is_member_of`: the caller's project is a member of the image (any member status)."""
    if ctx.is_admin or owns(ctx, image):
        return True
    if image.visibility in ("public", "community"):
        return True
    return image.visibility == "shared" and is_member_of


def require_owner_member(ctx: RequestContext, image: Image, action: str) -> None:
    """Changes to an image: admin, or a member of the owning project."""
    if ctx.is_admin:
        return
    if not (ctx.is_member and owns(ctx, image)):
        raise PolicyDenied(action)


def require_owner_reader(ctx: RequestContext, image: Image, action: str) -> None:
    """Reading what only the image's project sees: admin, or a reader of the owning project."""
    if ctx.is_admin:
        return
    if not (ctx.is_reader and owns(ctx, image)):
        raise PolicyDenied(action)


def require_visibility_allowed(ctx: RequestContext, visibility: str) -> None:
    if visibility == "public":
        require_admin(ctx, "publicize_image")
    elif visibility == "community":
        require_member(ctx, "communitize_image")
