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


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_every_operation_declares_the_errors_it_can_answer(document: dict[str, Any]) -> None:
    negotiated = {
        "application/json": {"schema": {"$ref": "#/components/schemas/GlintErrorBody"}},
        "text/html": {"schema": {"type": "string"}},
        "text/plain": {"schema": {"type": "string"}},
    }
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        responses = operation["responses"]
        errors = {code: spec for code, spec in responses.items() if code[0] in "45"}
        # The edge can answer these anywhere.
        assert {"400", "431", "500"} <= set(errors), where
        if path.startswith("/v2/"):
            # Every v2 call needs an identity, every image call one that policy allows, and
            # one naming a resource can miss it.
            assert "401" in errors, where
            if path.startswith("/v2/images"):
                assert "403" in errors, where
            if "{" in path:
                assert "404" in errors, where
        # Validation problems are answered 400 the Glance way, never FastAPI's 422.
        assert "422" not in responses, where
        for code, spec in errors.items():
            assert spec["description"], (where, code)
            # In the order the server negotiates: generated clients take the first one.
            assert list(spec["content"]) == list(negotiated), (where, code)
            assert spec["content"] == negotiated, (where, code)
        for code, spec in responses.items():
            assert "x-openstack-request-id" in spec["headers"], (where, code)
        assert any(code.startswith(("2", "3")) for code in responses), where
        parameters = {parameter["name"] for parameter in operation.get("parameters", [])}
        assert "x-openstack-request-id" in parameters, where


def test_v2_operations_accept_no_identity_a_token_or_identity_headers(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["token"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
        "description": schemes["token"]["description"],
    }
    headers = {scheme["name"] for scheme in schemes.values()}
    assert {"X-Identity-Status", "X-Project-Id", "X-User-Id", "X-Roles"} <= headers
    requirements = document["security"]
    assert {} in requirements  # noauth's default identity
    assert {"token": []} in requirements
    for path, method, operation in _operations(document):
        if not path.startswith("/v2/"):
            assert operation["security"] == [], (method, path)
        else:
            assert "security" not in operation, (method, path)


def test_list_documents_every_filter_the_server_parses(document: dict[str, Any]) -> None:
    from app.api.v2.list_params import _RESERVED_PARAMS
    from app.images.query import EXACT_FILTERS

    listed = {p["name"] for p in document["paths"]["/v2/images"]["get"]["parameters"]}
    assert listed >= _RESERVED_PARAMS | set(EXACT_FILTERS)


def test_download_documents_ranges(document: dict[str, Any]) -> None:
    download = document["paths"]["/v2/images/{image_id}/file"]["get"]
    assert "Range" in {p["name"] for p in download["parameters"]}
    assert {"200", "204", "206", "416"} <= set(download["responses"])
    partial = download["responses"]["206"]
    assert "Content-Range" in partial["headers"]
    assert "application/octet-stream" in partial["content"]


def test_request_bodies_are_as_strict_as_the_server(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    create = schemas["ImageCreateV2"]
    assert create["properties"]["id"]["type"] == "string"  # never null
    assert create["properties"]["min_ram"]["maximum"] == 2**31 - 1
    assert create["additionalProperties"]["type"] == "string"
    assert schemas["MemberCreateV2"]["properties"]["member"]["minLength"] == 1
    variants = [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["PatchOperationV2"]["anyOf"]]
    assert {"ImagePatchMinRam", "ImagePatchCustomProperty", "ImagePatchRemove"} <= set(variants)
    assert schemas["ImagePatchMinRam"]["properties"]["value"]["maximum"] == 2**31 - 1


def test_redoc_is_served_offline(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.status_code == 200
    assert "/docs/assets/redoc.standalone.js" in page.text
    assert "https://" not in page.text
    assert client.get("/docs/assets/redoc.standalone.js").status_code == 200


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
