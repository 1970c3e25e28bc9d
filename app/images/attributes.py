"""Which image attributes a caller may set, as Glance classifies them."""

from __future__ import annotations

from app.images.errors import ReadOnlyAttribute, ReservedAttribute

# Shown, never settable by a client.
READ_ONLY = frozenset(
    {
        "id",
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
    }
)
# Computed links and store bookkeeping: never accepted on create.
DISALLOWED = frozenset({"self", "file", "schema", "direct_url", "stores"})
# Internal to the service.
RESERVED = frozenset({"owner_id", "location", "locations", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"
# Core attributes a client may change, stored as columns of the image row...
WRITABLE_COLUMNS = (
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "disk_format",
    "container_format",
    "min_ram",
    "min_disk",
)
# ...and with tags, all of them; `remove` of any of them is refused.
WRITABLE_CORE = frozenset({*WRITABLE_COLUMNS, "tags"})
BASE = READ_ONLY | DISALLOWED | RESERVED | WRITABLE_CORE

VISIBILITIES = ("community", "public", "private", "shared")
MEMBER_STATUSES = ("pending", "accepted", "rejected")


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIX)


def check_settable(name: str, *, creating: bool) -> None:
    """Whether a client may set `name`: read-only and reserved attributes are 403, as Glance's
    request deserializer says (an `id` may be chosen on create only)."""
    if (name in READ_ONLY and not (creating and name == "id")) or name in DISALLOWED:
        raise ReadOnlyAttribute(name)
    if is_reserved(name):
        raise ReservedAttribute(name)
