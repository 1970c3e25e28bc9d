"""`noauth`: trust the identity headers that keystonemiddleware would have set."""

from __future__ import annotations

from collections.abc import Mapping

from app.config import AuthSettings
from app.context import RequestContext
from app.errors import Unauthorized


def _roles_from_header(value: str) -> frozenset[str]:
    # keystonemiddleware joins roles with commas; Glance lower-cases and does not percent-decode.
    return frozenset(role.strip().lower() for role in value.split(",") if role.strip())


class NoAuthStrategy:
    """Trusts the headers keystonemiddleware would set; without any, uses the default identity.

    A request that carries identity headers must also say `X-Identity-Status: Confirmed`, as it
    would behind keystonemiddleware; otherwise it is 401, like Glance.
    """

    _IDENTITY_HEADERS = (
        "x-identity-status",
        "x-project-id",
        "x-tenant-id",
        "x-tenant",
        "x-user-id",
        "x-user",
        "x-roles",
        "x-role",
    )

    def __init__(self, settings: AuthSettings):
        self._default = RequestContext(
            project_id=settings.default_project_id,
            user_id=settings.default_user_id,
            roles=frozenset(role.lower() for role in settings.default_roles),
        )

    async def authenticate(self, headers: Mapping[str, str]) -> RequestContext:
        if not any(name in headers for name in self._IDENTITY_HEADERS):
            return self._default
        if headers.get("x-identity-status") != "Confirmed":
            raise Unauthorized()
        return RequestContext(
            project_id=headers.get("x-project-id")
            or headers.get("x-tenant-id")
            or headers.get("x-tenant"),
            user_id=headers.get("x-user-id") or headers.get("x-user"),
            roles=_roles_from_header(headers.get("x-roles") or headers.get("x-role") or ""),
        )
