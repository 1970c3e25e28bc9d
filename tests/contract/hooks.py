"""Schemathesis hooks for the contract run (tests/contract/test_schemathesis.py): what the
OpenAPI document cannot say, told to the generator instead.

Loaded by schemathesis through SCHEMATHESIS_HOOKS, not by pytest.
"""

from __future__ import annotations

from typing import Any

import schemathesis

# JSON-patch bodies are JSON under Glance's own media type.
schemathesis.serializer.alias("application/openstack-images-v2.1-json-patch", "application/json")


@schemathesis.hook("filter_query").apply_to(name="GET /v2/images")
def expressible_list_queries(ctx: Any, query: dict[str, Any] | None) -> bool:
    """OpenAPI has no way to say that two parameters exclude each other: the `sort` syntax and
    the older `sort_key`/`sort_dir` one may not be combined, and several `sort_dir` values must
    pair up with as many `sort_key` values. Glance answers both with 400."""
    if not query:
        return True
    if "sort" in query and ("sort_key" in query or "sort_dir" in query):
        return False
    keys, dirs = _many(query.get("sort_key")), _many(query.get("sort_dir"))
    return len(dirs) <= 1 or len(dirs) == len(keys)


@schemathesis.hook("map_query").apply_to(name="GET /v2/images").apply_to(name="GET /v2/tasks")
def no_invented_marker(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """A `marker` must name an image (a task) the caller can see (else 400, as in Glance); the
    schema cannot say which strings those are, and stateful runs follow `next` links with real
    ones."""
    if query:
        query.pop("marker", None)
    return query


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
