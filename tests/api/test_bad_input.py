"""Hostile and malformed input: each gets Glance's 4xx, nothing is written, nothing is a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.identities import ADMIN, PATCH_V21, A, B


@pytest.fixture
def image(client: TestClient) -> dict[str, Any]:
    response = client.post("/v2/images", json={"name": "target", "tags": ["t"]}, headers=A)
    body: dict[str, Any] = response.json()
    return body


def patch(client: TestClient, image: dict[str, Any], operations: Any, **headers: str) -> Any:
    return client.patch(
        image["self"],
        content=json.dumps(operations),
        headers={**A, "Content-Type": PATCH_V21, **headers},
    )


HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**70,
    1.5,
    float("1e308"),
    "",
    "x" * 300,
    "\u0000",
    "\ud7ff\ue000",
    "\U0001f984 unicorn",
    [],
    [None],
    ["x" * 300],
    {},
    {"nested": {"deeper": [1, 2]}},
]
FIELDS = [
    "id",
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "min_ram",
    "min_disk",
    "disk_format",
    "container_format",
    "tags",
    "custom",
    "a" * 300,
]


@pytest.mark.parametrize("field", FIELDS)
def test_create_never_fails_with_500(client: TestClient, field: str) -> None:
    for value in HOSTILE_VALUES:
        response = client.post("/v2/images", json={field: value}, headers=ADMIN)
        assert response.status_code < 500, (field, value, response.text)


@pytest.mark.parametrize("field", FIELDS)
def test_patch_never_fails_with_500(client: TestClient, image: dict[str, Any], field: str) -> None:
    before = client.get(image["self"], headers=A).json()
    for value in HOSTILE_VALUES:
        for op in ("add", "replace", "remove"):
            response = patch(client, image, [{"op": op, "path": f"/{field}", "value": value}])
            assert response.status_code < 500, (op, field, value, response.text)
            if response.status_code == 200:
                before = response.json()
    assert client.get(image["self"], headers=A).json() == before


@pytest.mark.parametrize(
    "body",
    [b"{", b"nul", b"\xff\xfe", b'{"a": NaN}', b'{"a": Infinity}', b"[" * 100_000],
)
def test_malformed_json(client: TestClient, body: bytes) -> None:
    response = client.post("/v2/images", content=body, headers=A)
    assert response.status_code == 400
    assert "Malformed JSON in request body." in response.text


@pytest.mark.parametrize("body", [b"1", b'"x"', b"null", b"[]"])
def test_body_must_be_an_object(client: TestClient, body: bytes) -> None:
    response = client.post("/v2/images", content=body, headers=A)
    assert response.status_code == 400
    assert client.get("/v2/images", headers=A).json()["images"] == []


def test_oversized_json_body_is_413(client: TestClient) -> None:
    body = json.dumps({"name": "x", "description": "d" * (2 * 1024 * 1024)})
    assert client.post("/v2/images", content=body, headers=A).status_code == 413
    assert client.get("/v2/images", headers=A).json()["images"] == []


def test_property_limits(client: TestClient) -> None:
    assert client.post("/v2/images", json={"k" * 256: "v"}, headers=A).status_code == 400
    assert client.post("/v2/images", json={"k": "v" * 65536}, headers=A).status_code == 400
    assert client.post("/v2/images", json={"k": "v" * 65535}, headers=A).status_code == 201
    too_many = {f"p{i}": "v" for i in range(129)}
    response = client.post("/v2/images", json=too_many, headers=A)
    assert response.status_code == 413
    assert "Attempted: 129, Maximum: 128" in response.text
    response = client.post("/v2/images", json={"tags": [f"t{i}" for i in range(129)]}, headers=A)
    assert response.status_code == 413
    assert len(client.get("/v2/images", headers=A).json()["images"]) == 1


def test_ten_thousand_operation_patch(client: TestClient, image: dict[str, Any]) -> None:
    renames = [{"op": "replace", "path": "/name", "value": f"n{i}"} for i in range(10_000)]
    response = patch(client, image, renames)
    assert response.status_code == 200
    assert response.json()["name"] == "n9999"
    additions = [{"op": "add", "path": f"/p{i}", "value": "v"} for i in range(10_000)]
    response = patch(client, image, additions)
    assert response.status_code == 413
    shown = client.get(image["self"], headers=A).json()
    assert "p0" not in shown
    assert shown["name"] == "n9999"


def test_patch_is_all_or_nothing(client: TestClient, image: dict[str, Any]) -> None:
    operations = [
        {"op": "replace", "path": "/name", "value": "changed"},
        {"op": "add", "path": "/color", "value": "blue"},
        {"op": "replace", "path": "/min_ram", "value": "lots"},
    ]
    assert patch(client, image, operations).status_code == 400
    shown = client.get(image["self"], headers=A).json()
    assert shown["name"] == "target"
    assert "color" not in shown


@pytest.mark.parametrize(
    ("operation", "status", "message"),
    [
        ({"op": "replace", "path": "name", "value": "x"}, 400, "does not start with"),
        ({"op": "replace", "path": "/name/", "value": "x"}, 400, "end with"),
        ({"op": "replace", "path": "/a//b", "value": "x"}, 400, "adjacent"),
        ({"op": "replace", "path": "/a~2", "value": "x"}, 400, "recognized escape"),
        ({"op": "replace", "path": "/name/first", "value": "x"}, 400, "Invalid JSON pointer"),
        (
            {"op": "add", "path": "/locations/-", "value": {"url": "file:///x", "metadata": {}}},
            403,
            "not allowed to add locations if locations are invisible",
        ),
        (
            {"op": "add", "path": "/locations/-", "value": {"url": "file:///etc/passwd"}},
            400,
            "&#x27;metadata&#x27; is a required property",
        ),
        ({"op": "add", "path": "/locations", "value": []}, 400, "Invalid JSON pointer"),
        ({"op": "replace", "path": "/tags", "value": "t"}, 400, "is not of type"),
        ({"op": "remove", "path": "/tags"}, 403, "may not be removed"),
        ({"op": "replace", "path": "/owner", "value": "project-b"}, 403, "Owner"),
        ({"op": "replace", "path": "/visibility", "value": "public"}, 403, "publicize_image"),
        ({"op": "replace", "path": "/self", "value": "x"}, 403, "read-only"),
        ({"op": "add", "path": "/os_glance_import_task", "value": "x"}, 403, "reserved"),
        ({"op": "replace", "path": "/min_disk", "value": -5}, 400, "negative"),
        ({"op": "test", "path": "/name", "value": "x"}, 400, "Invalid operation"),
        ({"path": "/name", "value": "x"}, 400, "Invalid operation"),
        ({"op": "add", "value": "x"}, 400, "requires a member named &quot;path&quot;"),
    ],
)
def test_patch_rules(
    client: TestClient, image: dict[str, Any], operation: Any, status: int, message: str
) -> None:
    response = patch(client, image, [operation])
    assert response.status_code == status, response.text
    assert message in response.text


def test_patch_media_types_and_legacy_add(client: TestClient, image: dict[str, Any]) -> None:
    v20 = "application/openstack-images-v2.0-json-patch"
    response = client.patch(
        image["self"],
        content='[{"add": "/color", "value": "red"}]',
        headers={**A, "Content-Type": v20},
    )
    assert response.status_code == 200
    assert response.json()["color"] == "red"
    again = client.patch(
        image["self"],
        content='[{"add": "/color", "value": "blue"}]',
        headers={**A, "Content-Type": v20},
    )
    assert again.status_code == 409
    assert (
        patch(client, image, [{"op": "add", "path": "/color", "value": "blue"}]).json()["color"]
        == "blue"
    )
    missing = client.patch(image["self"], content="[]", headers=A)
    assert missing.status_code == 415
    assert missing.headers["accept-patch"].startswith("application/openstack-images-v2.0")


def test_admin_may_change_owner(client: TestClient, image: dict[str, Any]) -> None:
    response = client.patch(
        image["self"],
        content=json.dumps([{"op": "replace", "path": "/owner", "value": "project-b"}]),
        headers={**ADMIN, "Content-Type": PATCH_V21},
    )
    assert response.status_code == 200
    assert response.json()["owner"] == "project-b"
    assert client.get(image["self"], headers=A).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([("X-Project-Id", "project-a"), ("X-Project-Id", "admin")], 400),
        ([("X-Roles", "reader"), ("X-Roles", "admin")], 400),
        ([("X-Openstack-Request-Id", "r" * 65)], 431),
        ([("X-Big", "b" * 20000)], 431),
        ([(f"X-H{i}", "v") for i in range(101)], 431),
    ],
)
def test_hostile_headers(client: TestClient, headers: list[tuple[str, str]], status: int) -> None:
    base = [(k, v) for k, v in A.items() if k not in dict(headers)]
    response = client.get("/v2/images", headers=base + headers)
    assert response.status_code == status, response.text
    assert response.headers["x-openstack-request-id"].startswith("req-")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_body_where_none_is_expected(
    client: TestClient, image: dict[str, Any], method: str
) -> None:
    response = client.request(method, image["self"], content=b"{}", headers=A)
    assert response.status_code == 400
    assert "A body is not expected with this request." in response.text
    assert client.get(image["self"], headers=A).status_code == 200


def test_error_bodies_follow_accept(client: TestClient) -> None:
    missing = "/v2/images/00000000-0000-0000-0000-000000000000"
    html = client.get(missing, headers={**A, "Accept": "*/*"})
    assert html.headers["content-type"] == "text/html; charset=UTF-8"
    as_json = client.get(missing, headers={**A, "Accept": "application/json"})
    assert as_json.json()["title"] == "Not Found"
    plain = client.get(missing, headers={**A, "Accept": "image/png"})
    assert plain.headers["content-type"] == "text/plain; charset=UTF-8"
    assert plain.text.startswith("404 Not Found\n\nNo image found with ID")
    preferred = client.get(missing, headers={**A, "Accept": "text/html;q=0.1, application/json"})
    assert preferred.headers["content-type"] == "application/json"


def test_nul_characters_are_refused(client: TestClient, image: dict[str, Any]) -> None:
    assert client.post("/v2/images", json={"name": "a\u0000b"}, headers=A).status_code == 400
    assert client.post("/v2/images", json={"k\u0000": "v"}, headers=A).status_code == 400
    assert client.get("/v2/images?name=a%00b", headers=A).status_code == 400
    assert client.put(f"{image['self']}/tags/a%00b", headers=A).status_code == 400


def test_unicode_round_trips_exactly(client: TestClient) -> None:
    body = {"name": "\U0001f984 Ünïcode", "tags": ["Tag", "tag"], "Key": "\U0001f40d", "key": "v"}
    created = client.post("/v2/images", json=body, headers=A)
    assert created.status_code == 201, created.text
    shown = client.get(created.json()["self"], headers=A).json()
    assert shown["name"] == body["name"]
    assert sorted(shown["tags"]) == ["Tag", "tag"]
    assert (shown["Key"], shown["key"]) == ("\U0001f40d", "v")
    found = client.get("/v2/images?name=%F0%9F%A6%84%20%C3%9Cn%C3%AFcode", headers=A).json()
    assert [i["id"] for i in found["images"]] == [shown["id"]]
    assert client.get("/v2/images?tag=TAG", headers=A).json()["images"] == []


def test_integral_floats_are_integers(client: TestClient) -> None:
    created = client.post("/v2/images", json={"min_ram": 512.0}, headers=A)
    assert created.status_code == 201
    assert created.json()["min_ram"] == 512
    assert client.post("/v2/images", json={"min_disk": 1e308}, headers=A).status_code == 400


# A lone surrogate is what JSON's `\ud800` escape (or CESU-8 bytes) decodes to; no database
# driver can encode it. Each body below is sent as raw JSON text, so the escape reaches the server.
SURROGATE_BODIES = [
    ("/v2/images", '{"name": "\\ud800"}', "'name'"),
    ("/v2/images", '{"name": "ok \\udfff"}', "'name'"),
    ("/v2/images", '{"tags": ["fine", "\\ud800"]}', "'tags'"),
    ("/v2/images", '{"color": "\\ud800"}', "'color'"),
    ("/v2/images", '{"\\ud800": "v"}', "property name"),
    ("/v2/images", b'{"name": "\xed\xa0\x80"}', "'name'"),
]


@pytest.mark.parametrize(("path", "body", "named"), SURROGATE_BODIES)
def test_lone_surrogate_in_a_new_image_is_400(
    client: TestClient, path: str, body: str | bytes, named: str
) -> None:
    response = client.post(path, content=body, headers={**A, "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert named in response.text.replace("&#x27;", "'")
    assert "U+D800" in response.text or "U+DFFF" in response.text
    assert client.get("/v2/images", headers=A).json()["images"] == []


@pytest.mark.parametrize(
    ("operation", "named"),
    [
        ('{"op": "replace", "path": "/name", "value": "\\ud800"}', "'name'"),
        ('{"op": "add", "path": "/color", "value": "\\ud800"}', "'color'"),
        ('{"op": "add", "path": "/\\ud800", "value": "v"}', "'path'"),
        ('{"op": "replace", "path": "/tags", "value": ["\\ud800"]}', "'tags'"),
    ],
)
def test_lone_surrogate_in_a_patch_is_400(
    client: TestClient, image: dict[str, Any], operation: str, named: str
) -> None:
    before = client.get(image["self"], headers=A).json()
    response = client.patch(
        image["self"], content=f"[{operation}]", headers={**A, "Content-Type": PATCH_V21}
    )
    assert response.status_code == 400, response.text
    assert f"Invalid value for {named}" in response.text.replace("&#x27;", "'")
    assert client.get(image["self"], headers=A).json() == before


def test_lone_surrogate_as_a_member_is_400(client: TestClient, image: dict[str, Any]) -> None:
    response = client.post(
        f"{image['self']}/members",
        content='{"member": "\\ud800"}',
        headers={**A, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "Invalid value for 'member'" in response.text.replace("&#x27;", "'")
    assert client.get(f"{image['self']}/members", headers=A).json()["members"] == []


def test_member_status_with_a_lone_surrogate_is_400(
    client: TestClient, image: dict[str, Any]
) -> None:
    added = client.post(f"{image['self']}/members", json={"member": "project-b"}, headers=A)
    assert added.status_code == 200, added.text
    response = client.put(
        f"{image['self']}/members/project-b",
        content='{"status": "\\ud800"}',
        headers={**B, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "Invalid value for 'status'" in response.text.replace("&#x27;", "'")


# In a URL a surrogate can only arrive as the percent-escaped bytes of its CESU-8 form, which is
# not UTF-8; decoding them would silently store U+FFFD instead of what the client sent.
@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("{image}/tags/%ED%A0%80", "URL path"),
        ("{image}/tags/ok%FF", "URL path"),
        ("{image}/members/%ED%A0%80", "URL path"),
        ("/v2/images?name=%ED%A0%80", "'name'"),
        ("/v2/images?%ED%A0%80=x", "query parameter name"),
        ("/v2/images?tag=a&marker=%C3", "'marker'"),
    ],
)
def test_url_that_is_not_utf8_is_400(
    client: TestClient, image: dict[str, Any], url: str, named: str
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, url.format(image=image["self"]), headers=A)
        assert response.status_code == 400, (method, response.text)
        assert named in response.text.replace("&#x27;", "'")
    assert client.get(image["self"], headers=A).json()["tags"] == ["t"]


def test_surrogate_pairs_and_utf8_urls_still_work(
    client: TestClient, image: dict[str, Any]
) -> None:
    created = client.post(
        "/v2/images",
        content='{"name": "\\ud83e\\udd84", "tags": ["\\ud83d\\udc0d"]}',
        headers={**A, "Content-Type": "application/json"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "\U0001f984"
    assert client.put(f"{image['self']}/tags/%F0%9F%A6%84", headers=A).status_code == 204
    assert "\U0001f984" in client.get(image["self"], headers=A).json()["tags"]
    found = client.get("/v2/images?tag=%F0%9F%90%8D", headers=A).json()["images"]
    assert [i["id"] for i in found] == [created.json()["id"]]


@pytest.mark.parametrize(
    "query",
    [
        "size_min=9223372036854775808",
        "size_max=9223372036854775808",
        "size_min=-9223372036854775809",
        "size_max=" + "9" * 40,
        "limit=9223372036854775808",
        "limit=" + "9" * 40,
    ],
)
def test_integer_params_beyond_64_bits_are_400(client: TestClient, query: str) -> None:
    response = client.get(f"/v2/images?{query}", headers=A)
    assert response.status_code == 400, response.text
    assert f"Invalid value for '{query.split('=')[0]}'" in response.text.replace("&#x27;", "'")


def test_integer_params_at_the_64_bit_edges_work(client: TestClient) -> None:
    for query in (
        "size_min=-9223372036854775808",
        "size_max=9223372036854775807",
        "limit=9223372036854775807",
    ):
        assert client.get(f"/v2/images?{query}", headers=A).status_code == 200, query
