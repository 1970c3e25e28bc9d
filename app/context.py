"""Who is calling: the identity the auth strategy established, as policy code sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.config import AuthSettings
from app.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class RequestContext:
    project_id: str | None
    user_id: str | None
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_reader(self) -> bool:
        return bool(self.roles & {"reader", "member", "admin"})

    @property
    def is_member(self) -> bool:
        return bool(self.roles & {"member", "admin"})


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

    def authenticate(self, headers: Mapping[str, str]) -> RequestContext:
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
