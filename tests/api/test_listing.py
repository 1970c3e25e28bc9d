"""GET /v2/images: paging, ordering, filters and who sees what."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.identities import ADMIN, A, B, C, identity


def create(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/v2/images", json=body, headers=headers)
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


def follow(client: TestClient, headers: dict[str, str], url: str) -> list[dict[str, Any]]:
    """Every page, by the `next` links, as a client would."""
    images: list[dict[str, Any]] = []
    for _ in range(100):
        page = client.get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        images += body["images"]
        if "next" not in body:
            return images
        url = body["next"]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(
    "sort",
    [
        "",
        "&sort_key=name&sort_dir=asc",
        "&sort_key=name",
        "&sort=size:asc,name:desc",
        "&sort_key=disk_format&sort_key=name&sort_dir=asc&sort_dir=desc",
        "&sort=updated_at:asc",
        "&sort=status,id:asc",
    ],
)
def test_paging_visits_every_image_once_in_order(client: TestClient, sort: str) -> None:
    names = ["b", None, "a", "c", None, "b", "a"]
    formats = ["raw", None, "qcow2"]
    created = [
        create(client, A, name=name, disk_format=fmt)
        for name, fmt in zip(names, itertools.cycle(formats), strict=False)
    ]
    listed = follow(client, A, f"/v2/images?limit=2{sort}")
    assert sorted(i["id"] for i in listed) == sorted(i["id"] for i in created)
    everything = client.get(f"/v2/images?limit=100{sort}", headers=A).json()["images"]
    assert [i["id"] for i in listed] == [i["id"] for i in everything]


def test_default_order_is_newest_first_and_next_only_on_full_pages(client: TestClient) -> None:
    ids = [create(client, A, name=f"n{i}")["id"] for i in range(3)]
    page = client.get("/v2/images?limit=3", headers=A).json()
    assert [i["id"] for i in page["images"]] == ids[::-1]
    assert page["next"] == f"/v2/images?limit=3&marker={ids[0]}"
    last = client.get(page["next"], headers=A).json()
    assert last["images"] == []
    assert "next" not in last
    assert "next" not in client.get("/v2/images?limit=4", headers=A).json()


def test_limit_is_capped_and_defaulted(client: TestClient) -> None:
    for i in range(27):
        create(client, A, name=f"n{i}")
    assert len(client.get("/v2/images", headers=A).json()["images"]) == 25
    assert len(client.get("/v2/images?limit=5000", headers=A).json()["images"]) == 27


def test_visibility_rules(client: TestClient) -> None:
    public = create(client, ADMIN, name="public", visibility="public")
    community = create(client, A, name="community", visibility="community")
    private = create(client, A, name="private", visibility="private")
    shared = create(client, A, name="shared")
    hidden = create(client, A, name="hidden", os_hidden=True)
    b_own = create(client, B, name="b-own", visibility="private")

    def names(headers: dict[str, str], query: str = "") -> set[str]:
        response = client.get(f"/v2/images?limit=100{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {i["name"] for i in response.json()["images"]}

    assert names(A) == {"public", "community", "private", "shared"}
    assert names(B) == {"public", "b-own"}
    assert names(B, "&visibility=community") == {"community"}
    assert names(B, "&visibility=all") == {"public", "community", "b-own"}
    assert names(A, "&visibility=private") == {"private"}
    assert names(A, "&os_hidden=true") == {"hidden"}
    assert names(ADMIN) == {"public", "community", "private", "shared", "b-own"}
    assert names(ADMIN, "&visibility=private") == {"private", "b-own"}
    # Community images are shown by id to anyone; private and shared ones only to their owner.
    assert client.get(community["self"], headers=B).status_code == 200
    assert client.get(public["self"], headers=B).status_code == 200
    for image in (private, shared, hidden):
        assert client.get(image["self"], headers=B).status_code == 404
    assert client.get(b_own["self"], headers=ADMIN).status_code == 200


def test_shared_images_by_member_status(client: TestClient) -> None:
    image = create(client, A, name="shared")
    for project in ("project-b", "project-c"):
        response = client.post(f"{image['self']}/members", json={"member": project}, headers=A)
        assert response.status_code == 200
    client.put(f"{image['self']}/members/project-c", json={"status": "rejected"}, headers=C)

    def sees(headers: dict[str, str], query: str) -> bool:
        found = client.get(f"/v2/images?{query}", headers=headers).json()["images"]
        return image["id"] in {i["id"] for i in found}

    assert not sees(B, "")
    assert sees(B, "member_status=pending")
    assert sees(B, "member_status=all")
    assert not sees(C, "member_status=pending")
    assert sees(C, "member_status=rejected")
    assert client.get("/v2/images?member_status=maybe", headers=B).status_code == 400


def test_filters(client: TestClient) -> None:
    one = create(client, A, name="one", disk_format="raw", tags=["x", "y"], os_distro="ubuntu")
    two = create(client, A, name="two,2", disk_format="qcow2", tags=["x"], protected=True)
    create(client, A, name="three", container_format="bare", os_distro="debian")

    def ids(query: str) -> set[str]:
        response = client.get(f"/v2/images?{query}", headers=A)
        assert response.status_code == 200, response.text
        return {i["id"] for i in response.json()["images"]}

    assert ids("name=one") == {one["id"]}
    assert ids('name=in:one,"two,2"') == {one["id"], two["id"]}
    assert ids("name=eq:two,2") == {two["id"]}
    assert ids("disk_format=in:raw,qcow2") == {one["id"], two["id"]}
    assert ids("tag=x") == {one["id"], two["id"]}
    assert ids("tag=x&tag=y") == {one["id"]}
    assert ids("os_distro=ubuntu") == {one["id"]}
    assert ids("os_distro=in:ubuntu,fedora") == {one["id"]}
    assert ids("protected=true") == {two["id"]}
    assert len(ids("protected=false")) == 2
    assert ids(f"id={one['id']}") == {one["id"]}
    assert ids("owner=project-a") == ids("")
    assert len(ids("")) == 3
    assert ids("created_at=lt:2000-01-01T00:00:00Z") == set()
    assert len(ids("created_at=gte:2000-01-01T00:00:00Z")) == 3
    assert len(ids(f"updated_at=lte:{one['updated_at']}")) >= 1
    assert ids("created_at=neq:2000-01-01T00:00:00Z") == ids("")
    assert ids("status=queued") == ids("")
    assert ids("status=bogus") == set()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("name=like:x", "Unable to filter by unknown operator &#x27;like&#x27;."),
        (
            "status=in:a%0Db",
            "Invalid value for &#x27;status&#x27;: it is not a comma-separated list.",
        ),
        ("protected=True", "Invalid value &#x27;True&#x27; for &#x27;protected&#x27; filter."),
        ("os_hidden=1", "Invalid value &#x27;1&#x27; for &#x27;os_hidden&#x27; filter."),
        ("size_max=big", "Unable to filter on a range with a non-numeric value."),
        ("changes-since=2020-01-01", "The parameter changes-since is no longer available on v2."),
        ("created_at=before:2020-01-01", "Bad &quot;created_at&quot; query filter format."),
        ("sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc", "Number of"),
        ("sort=name:sideways", "Invalid sort direction: sideways"),
        ("marker=not-a-uuid", "No image found with ID not-a-uuid"),
    ],
)
def test_bad_list_queries(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/v2/images?{query}", headers=A)
    assert response.status_code == 400
    assert message in response.text


def test_marker_must_be_visible_to_the_caller(client: TestClient) -> None:
    private = create(client, A, name="private", visibility="private")
    assert client.get(f"/v2/images?marker={private['id']}", headers=A).status_code == 200
    assert client.get(f"/v2/images?marker={private['id']}", headers=B).status_code == 400


def test_deleted_images_are_never_listed(client: TestClient) -> None:
    image = create(client, A, name="gone")
    assert client.delete(image["self"], headers=A).status_code == 204
    assert client.get("/v2/images", headers=A).json()["images"] == []
    assert client.get("/v2/images", headers=ADMIN).json()["images"] == []
    assert client.get(f"/v2/images?marker={image['id']}", headers=A).status_code == 400


def test_reader_lists_but_nobody_without_roles(client: TestClient) -> None:
    create(client, A, name="x")
    assert (
        len(client.get("/v2/images", headers=identity("project-a", "reader")).json()["images"]) == 1
    )
    assert client.get("/v2/images", headers=identity("project-a", "")).status_code == 403
