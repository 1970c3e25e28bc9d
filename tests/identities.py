"""Identity headers as keystonemiddleware sets them, for the projects the tests use
(the same cast as the recorded Glance samples)."""

from __future__ import annotations


def identity(project: str | None, roles: str, user: str = "user") -> dict[str, str]:
    headers = {"X-Identity-Status": "Confirmed", "X-User-Id": user, "X-Roles": roles}
    if project is not None:
        headers["X-Project-Id"] = project
    return headers


A = identity("project-a", "member,reader", "user-a")
B = identity("project-b", "member,reader", "user-b")
C = identity("project-c", "member,reader", "user-c")
D = identity("project-d", "member,reader", "user-d")
READER_A = identity("project-a", "reader", "reader-a")
ADMIN = identity("admin-project", "admin,member,reader", "admin")
PATCH_V21 = "application/openstack-images-v2.1-json-patch"
