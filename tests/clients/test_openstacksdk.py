"""openstacksdk against a live Glint, configured as `openstack --os-auth-type none
--os-endpoint URL` is: version discovery first, then the image proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import pytest
from openstack import exceptions
from openstack.connection import Connection
from openstack.image.v2._proxy import Proxy as ImageProxy
from openstack.image.v2.image import Image

from tests.clients.support import SdkFactory, Traffic

pytestmark = pytest.mark.clients

MD5 = "owner_specified.openstack.md5"
SHA256 = "owner_specified.openstack.sha256"
OBJECT = "owner_specified.openstack.object"


def v2(conn: Connection) -> ImageProxy:
    """The connection's image proxy; discovery picks v2 (the sdk types it v1 | v2)."""
    proxy = conn.image
    assert proxy.api_version == "2"
    return proxy


def _names(images: Iterable[Image]) -> set[str]:
    return {image.name for image in images}


def test_discovery_follows_the_versions_document(
    sdk: Connection, endpoint: str, traffic: Traffic
) -> None:
    assert list(v2(sdk).images()) == []

    discovery, listing = traffic.exchanges
    assert (discovery.method, discovery.path, discovery.status) == ("GET", "/", 300)
    assert discovery.request_headers["accept"] == "application/json"
    assert (listing.method, listing.path, listing.status) == ("GET", "/v2/images", 200)
    assert v2(sdk).get_endpoint() == f"{endpoint}/v2/"


def test_discovery_href_follows_the_host_header(sdk_as: SdkFactory, endpoint: str) -> None:
    # The same server by another name: the versions document must point back at that name.
    other = endpoint.replace("127.0.0.1", "localhost")
    conn = sdk_as({}, base=other)
    assert list(v2(conn).images()) == []
    assert v2(conn).get_endpoint() == f"{other}/v2/"


def test_create_image_without_data(sdk: Connection, traffic: Traffic) -> None:
    image = v2(sdk).create_image(
        "sdk-image", disk_format="raw", tags=["sdk"], os_distro="ubuntu", custom="value"
    )

    # Not allow_duplicates: it looked the name up first, as an id, then by ?name=, then
    # among hidden images (openstacksdk sends `os_hidden=True`, capitalised).
    lookups = [(e.path, e.status) for e in traffic.to("GET", "/v2/images")]
    assert lookups == [
        ("/v2/images/sdk-image", 404),
        ("/v2/images?name=sdk-image", 200),
        ("/v2/images?os_hidden=True", 200),
    ]
    (post,) = traffic.to("POST", "/v2/images")
    assert post.status == 201
    assert post.json_body()[MD5] == ""

    assert image.name == "sdk-image"
    assert image.status == "queued"
    assert image.disk_format == "raw"
    assert image.container_format == "bare"
    assert image.visibility == "shared"
    assert image.owner_id == "admin"
    assert image.tags == ["sdk"]
    assert image.os_distro == "ubuntu"
    assert image.properties["custom"] == "value"
    assert image.properties[MD5] == ""
    assert image.properties[SHA256] == ""
    assert image.properties[OBJECT] == "images/sdk-image"

    fetched = v2(sdk).get_image(image.id)
    assert fetched.properties == image.properties
    assert fetched.created_at == image.created_at


def test_create_image_is_idempotent_by_name_and_hashes(sdk: Connection) -> None:
    md5, sha256 = "d41d8cd98f00b204e9800998ecf8427e", "e3b0c442"
    first = v2(sdk).create_image("once", disk_format="raw", md5=md5, sha256=sha256)
    assert first.properties[MD5] == md5
    assert first.properties[SHA256] == sha256
    # Same name and hashes: the existing image is returned; other hashes make a new one.
    assert v2(sdk).create_image("once", disk_format="raw", md5=md5, sha256=sha256).id == first.id
    other = v2(sdk).create_image("once", disk_format="raw", md5="0" * 32, sha256="0")
    assert other.id != first.id
    assert len(list(v2(sdk).images(name="once"))) == 2


def test_find_and_get(sdk: Connection) -> None:
    image = v2(sdk).create_image("findable", disk_format="raw", allow_duplicates=True)

    assert v2(sdk).find_image("findable", ignore_missing=False).id == image.id
    assert v2(sdk).find_image(image.id, ignore_missing=False).name == "findable"
    assert v2(sdk).find_image("absent") is None
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk).find_image("absent", ignore_missing=False)
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk).get_image(str(uuid.uuid4()))
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk).get_image("not-a-uuid")

    # Two images of one name: find by name is ambiguous.
    v2(sdk).create_image("findable", disk_format="raw", allow_duplicates=True)
    with pytest.raises(exceptions.DuplicateResource):
        v2(sdk).find_image("findable")


def test_paginated_list(sdk: Connection, traffic: Traffic) -> None:
    for n in range(5):
        v2(sdk).create_image(f"page-{n}", disk_format="raw", allow_duplicates=True)
    traffic.clear()

    listed = list(v2(sdk).images(limit=2))

    assert [image.name for image in listed] == [f"page-{n}" for n in reversed(range(5))]
    # 2 + 2 + 1 following `next`, then once more by marker (openstacksdk does, with a limit).
    pages = traffic.to("GET", "/v2/images")
    assert len(pages) == 4
    assert all(page.status == 200 and "limit=2" in page.path for page in pages)
    assert "marker=" not in pages[0].path
    assert all("marker=" in page.path for page in pages[1:])

    traffic.clear()
    assert len(list(v2(sdk).images())) == 5
    assert len(traffic.to("GET", "/v2/images")) == 1


def test_list_filters(sdk: Connection, sdk_a: Connection) -> None:
    v2(sdk).create_image("alpha", disk_format="raw", tags=["x", "y"], allow_duplicates=True)
    v2(sdk).create_image("beta", disk_format="raw", tags=["x"], allow_duplicates=True)
    v2(sdk).create_image(
        "gamma", disk_format="raw", visibility="public", is_protected=True, allow_duplicates=True
    )
    v2(sdk_a).create_image("delta", disk_format="raw", allow_duplicates=True)

    assert _names(v2(sdk).images(name="alpha")) == {"alpha"}
    assert _names(v2(sdk).images(tag="x")) == {"alpha", "beta"}
    assert _names(v2(sdk).images(visibility="public")) == {"gamma"}
    assert _names(v2(sdk).images(protected="true")) == {"gamma"}  # sent as is
    assert _names(v2(sdk).images(owner="project-a")) == {"delta"}
    assert _names(v2(sdk).images(status="queued")) == {"alpha", "beta", "gamma", "delta"}
    assert _names(v2(sdk).images(sort_key="name", sort_dir="asc")) == {
        "alpha",
        "beta",
        "gamma",
        "delta",
    }
    assert [i.name for i in v2(sdk).images(sort="name:asc")] == [
        "alpha",
        "beta",
        "delta",
        "gamma",
    ]
    assert _names(v2(sdk_a).images()) == {"delta", "gamma"}


def test_update_image(sdk: Connection, traffic: Traffic) -> None:
    image = v2(sdk).create_image("old", disk_format="raw", tags=["t"], os_distro="fedora")
    traffic.clear()

    updated = v2(sdk).update_image(image, name="new", min_ram=1024, os_distro="rhel")

    (patch,) = traffic.to("PATCH", "/v2/images/")
    assert patch.status == 200
    assert patch.request_headers["accept"] == ""
    assert patch.request_headers["content-type"] == "application/openstack-images-v2.1-json-patch"
    assert updated.name == "new"
    assert updated.min_ram == 1024
    assert updated.os_distro == "rhel"
    assert updated.tags == ["t"]
    assert v2(sdk).get_image(image.id).name == "new"

    assert v2(sdk).update_image_properties(image=updated, hw_qemu_guest_agent="yes", site="x")
    refreshed = v2(sdk).get_image(image.id)
    assert refreshed.hw_qemu_guest_agent == "yes"
    assert refreshed.properties["site"] == "x"
    assert refreshed.properties[MD5] == ""


def test_update_read_only_is_forbidden(sdk: Connection) -> None:
    image = v2(sdk).create_image("ro", disk_format="raw")
    with pytest.raises(exceptions.ForbiddenException):
        v2(sdk).update_image(image, status="active")


def test_tags(sdk: Connection) -> None:
    image = v2(sdk).create_image("tagged", disk_format="raw")

    v2(sdk).add_tag(image, "one")
    v2(sdk).add_tag(image, "one")
    v2(sdk).add_tag(image, "two")
    assert sorted(v2(sdk).get_image(image.id).tags) == ["one", "two"]

    v2(sdk).remove_tag(image, "one")
    assert v2(sdk).get_image(image.id).tags == ["two"]
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk).remove_tag(image, "one")


def test_members(sdk_a: Connection, sdk_b: Connection) -> None:
    image = v2(sdk_a).create_image("to-share", disk_format="raw")
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk_b).get_image(image.id)

    member = v2(sdk_a).add_member(image, member="project-b")
    assert member.member_id == "project-b"
    assert member.status == "pending"

    assert _names(v2(sdk_b).images()) == set()
    assert _names(v2(sdk_b).images(member_status="pending")) == {"to-share"}

    accepted = v2(sdk_b).update_member("project-b", image, status="accepted")
    assert accepted.status == "accepted"
    assert _names(v2(sdk_b).images()) == {"to-share"}
    assert v2(sdk_a).get_member("project-b", image).status == "accepted"
    assert [m.status for m in v2(sdk_a).members(image)] == ["accepted"]

    with pytest.raises(exceptions.ForbiddenException):
        v2(sdk_b).update_image(image, name="mine-now")
    with pytest.raises(exceptions.ForbiddenException):
        v2(sdk_b).delete_image(image)

    v2(sdk_a).remove_member("project-b", image)
    assert list(v2(sdk_a).members(image)) == []
    assert v2(sdk_b).find_image(image.id) is None
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk_a).remove_member("project-b", image, ignore_missing=False)


def test_delete_image(sdk: Connection) -> None:
    image = v2(sdk).create_image("gone", disk_format="raw")
    keeper = v2(sdk).create_image("kept", disk_format="raw", is_protected=True)

    v2(sdk).delete_image(image)
    assert v2(sdk).find_image("gone") is None
    v2(sdk).delete_image(image)  # ignore_missing by default
    with pytest.raises(exceptions.NotFoundException):
        v2(sdk).delete_image(image, ignore_missing=False)

    with pytest.raises(exceptions.ForbiddenException):
        v2(sdk).delete_image(keeper)
    assert _names(v2(sdk).images()) == {"kept"}


def test_cloud_layer(sdk: Connection) -> None:
    """The `Connection` helpers `openstack image ...` leans on."""
    image = sdk.create_image("cloudy", disk_format="raw", wait=False, team="infra")
    assert image is not None
    assert image.properties["team"] == "infra"
    by_name, by_id = sdk.get_image("cloudy"), sdk.get_image(image.id)
    assert by_name is not None
    assert by_name.id == image.id
    assert by_id is not None
    assert by_id.name == "cloudy"
    assert [i.name for i in sdk.list_images()] == ["cloudy"]
    assert sdk.get_image("nothing") is None
    assert sdk.delete_image("cloudy")
    assert sdk.list_images() == []
