"""The committed OpenAPI document, its operation ids and error responses, and the offline /docs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.api.openapi import render_document

COMMITTED = Path(__file__).resolve().parent.parent / "openapi" / "v2.json"
REGENERATE = "glint openapi --output openapi/v2.json"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(render_document())
    return loaded


def _v2_operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        if path.startswith("/v2/"):
            for method, operation in item.items():
                if method in HTTP_METHODS:
                    yield path, method, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_committed_document_is_current() -> None:
    assert COMMITTED.is_file(), f"openapi/v2.json is missing; generate it with `{REGENERATE}`"
    assert COMMITTED.read_text() == render_document(), (
        f"openapi/v2.json differs from the routers; regenerate it with `{REGENERATE}` "
        "and commit the result"
    )


def test_served_document_matches_committed(client: TestClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(COMMITTED.read_text())


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs = set(_refs(document))
    assert refs, "the document references no component schemas"
    for ref in refs:
        prefix = "#/components/schemas/"
        assert ref.startswith(prefix), ref
        assert ref.removeprefix(prefix) in schemas, f"dangling {ref}"


def test_v2_operation_ids_are_tag_and_function(document: dict[str, Any], app: FastAPI) -> None:
    # The API routes as the routers declare them (FastAPI's app.routes nests included routers).
    routes = {
        (route.path, method.lower()): route
        for route in app.state.api_routes
        if isinstance(route, APIRoute) and route.include_in_schema and route.methods
        for method in route.methods
    }
    operations = list(_v2_operations(document))
    assert len(operations) >= 10
    seen: set[str] = set()
    for path, method, operation in operations:
        route = routes[(path, method)]
        expected = f"{route.tags[0]}-{route.endpoint.__name__}"
        assert operation.get("operationId") == expected, (method, path)
        assert operation["tags"] == [route.tags[0]], (method, path)
        assert re.fullmatch(r"[a-z0-9]+-[a-z][a-z0-9_]*", expected), expected
        assert expected not in seen, f"duplicate operationId {expected}"
        seen.add(expected)


def test_v2_operations_declare_glance_error_responses(document: dict[str, Any]) -> None:
    error_body = {"$ref": "#/components/schemas/GlintErrorBody"}
    for path, method, operation in _v2_operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = {code: spec for code, spec in responses.items() if code[0] in "45"}
        # Every v2 call needs an identity, and one naming a resource can miss it.
        assert "401" in errors, where
        if "{" in path:
            assert "404" in errors, where
        # Validation problems are answered 400 the Glance way, never FastAPI's 422.
        assert "422" not in responses, where
        for code, spec in errors.items():
            assert spec["description"], (where, code)
            assert spec["content"]["application/json"]["schema"] == error_body, (where, code)
        successes = [code for code in responses if code.startswith("2")]
        assert successes, where


def test_docs_are_served_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text
    assert "https://" not in page.text
    assets = set(re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text))
    assert "/docs/assets/swagger-ui-bundle.js" in assets
    assert "/docs/assets/swagger-ui.css" in assets
    assert all(asset.startswith("/docs/assets/") for asset in assets), assets
    assert "'/openapi.json'" in page.text
    expected_types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 1000, asset
        assert expected_types[Path(asset).suffix] in response.headers["content-type"], asset
    bundle = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
