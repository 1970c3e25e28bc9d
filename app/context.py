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
