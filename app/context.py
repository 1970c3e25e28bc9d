"""Who is calling: the identity the auth strategy (app.auth) established, as policy code sees it."""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def has_service_role(self) -> bool:
        """Another OpenStack service (Nova, Cinder) calling on its own behalf."""
        return "service" in self.roles

    @property
    def is_service(self) -> bool:
        """Glance's `service_api` rule: the service role, or admin (which services without a
        service token still use)."""
        return self.has_service_role or self.is_admin
