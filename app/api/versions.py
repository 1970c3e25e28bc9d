"""The versions document (`GET /`, `GET /versions`) and `GET /healthcheck`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from app.api.v2.responses import json_response

# Always offered, as Glance does without multi-store and without an image cache.
_BASE_MINORS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9, 15, 17})
_MULTISTORE_MINORS = frozenset({8, 10, 11, 12, 13})
_CACHE_MINORS = frozenset({14, 16, 18})


def v2_minors(*, multistore: bool, cache: bool) -> frozenset[int]:
    minors = set(_BASE_MINORS)
    if multistore:
        minors |= _MULTISTORE_MINORS
    if cache:
        minors |= _CACHE_MINORS
    return frozenset(minors)


def versions_document(request: Request) -> dict[str, list[dict[str, object]]]:
    minors: frozenset[int] = request.app.state.v2_minors
    base = request.app.state.settings.server.public_endpoint or str(request.base_url)
    href = base.rstrip("/") + "/v2/"
    newest = max(minors)
    return {
        "versions": [
            {
                "id": f"v2.{minor}",
                "status": "CURRENT" if minor == newest else "SUPPORTED",
                "links": [{"rel": "self", "href": href}],
            }
            for minor in sorted(minors, reverse=True)
        ]
    }


def multiple_choices(request: Request) -> Response:
    return json_response(versions_document(request), status_code=300)


router = APIRouter(tags=["versions"])


@router.get("/", status_code=300)
def list_versions_root(request: Request) -> Response:
    return multiple_choices(request)


@router.get("/versions")
def list_versions(request: Request) -> Response:
    return json_response(versions_document(request))


@router.get(
    "/healthcheck",
    response_class=PlainTextResponse,
    responses={503: {"description": "The database cannot be reached"}},
)
def healthcheck(request: Request) -> Response:
    """Glance's answer (200 `OK`), but only when the database answers too, so that a load
    balancer takes a node out whose database is gone."""
    if not request.app.state.db.is_reachable():
        return PlainTextResponse("DATABASE UNREACHABLE", status_code=503)
    return PlainTextResponse("OK")
