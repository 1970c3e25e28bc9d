"""python-glanceclient (v2) against a live Glint: what it sends, and that it understands the
answers, including its warlock validation of responses against `/v2/schemas/image`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from glanceclient import exc
from glanceclient.shell import OpenStackImagesShell
from glanceclient.v2.client import Client as GlanceClient

from tests.clients.support import GlanceFactory, Traffic
from tests.identities import PATCH_V21, READER_A

pytestmark = pytest.mark.clients

DOTTED = "owner_specified.openstack.md5"


def _create(client: GlanceClient, **kwargs: Any) -> dict[str, Any]:
    return dict(client.images.create(**kwargs))


def _names(images: Any) -> set[str]:
    return {image["name"] for image in images}


def test_create_then_show_conform_to_the_image_schema(
    glance: GlanceClient, traffic: Traffic
) -> None:
    created = _create(
        glance,
        name="cirros",
        disk_format="qcow2",
        container_format="bare",
        min_ram=256,
        tags=["small", "test"],
        os_distro="cirros",
        **{DOTTED: "d41d8cd98f00b204e9800998ecf8427e"},
    )
    # images.create validated its kwargs and this response with warlock already.
    assert created["name"] == "cirros"
    assert created["status"] == "queued"
    assert created["visibility"] == "shared"
    assert created["owner"] == "admin"
    assert created["min_ram"] == 256
    assert sorted(created["tags"]) == ["small", "test"]
    assert created["os_distro"] == "cirros"
    assert created[DOTTED] == "d41d8cd98f00b204e9800998ecf8427e"

    (post,) = traffic.to("POST", "/v2/images")
    assert post.status == 201
    assert post.response_headers["location"].endswith(f"/v2/images/{created['id']}")

    shown = dict(glance.images.get(created["id"]))
    assert shown == created
    glance.images.model(**shown)  # warlock raises ValueError if the body breaks the schema

    # The raw body, `self` included, against the schema the server publishes.
    schema = glance.schemas.get("image").raw()
    _, raw = glance.http_client.get(f"/v2/images/{created['id']}")
    jsonschema.validate(raw, schema)
    assert raw["self"] == f"/v2/images/{created['id']}"
    assert raw["file"] == f"/v2/images/{created['id']}/file"


def test_schema_refuses_what_glance_refuses(glance: GlanceClient) -> None:
    # Client-side validation against the served schema: a non-string custom property and an
    # unknown disk format are refused before anything is sent.
    with pytest.raises(TypeError):
        glance.images.create(name="bad", hw_cpu_cores=4)
    with pytest.raises(TypeError):
        glance.images.create(name="bad", disk_format="floppy")
    assert list(glance.images.list()) == []


def test_unknown_or_non_uuid_image_is_not_found(glance: GlanceClient, traffic: Traffic) -> None:
    for image_id in ("not-a-uuid", "cirros", str(uuid.uuid4())):
        with pytest.raises(exc.HTTPNotFound):
            glance.images.get(image_id)
    assert [e.status for e in traffic.to("GET", "/v2/images/")] == [404, 404, 404]
    # glanceclient needs a Content-Type on errors; for `Accept: */*` Glance sends HTML.
    assert all(
        e.response_headers["content-type"].startswith("text/html")
        for e in traffic.to("GET", "/v2/images/")
    )
    missing = str(uuid.uuid4())
    with pytest.raises(exc.HTTPNotFound):
        glance.images.delete(missing)
    with pytest.raises(exc.HTTPNotFound):
        glance.images.update(missing, name="x")
    with pytest.raises(exc.HTTPNotFound):
        glance.image_tags.update(missing, "tag")
    with pytest.raises(exc.HTTPNotFound):
        list(glance.image_members.list(missing))


def test_list_follows_next_across_pages(glance: GlanceClient, traffic: Traffic) -> None:
    ids = {_create(glance, name=f"page-{n}")["id"] for n in range(7)}
    traffic.clear()

    listed = list(glance.images.list(page_size=3))

    assert {image["id"] for image in listed} == ids
    assert len(listed) == 7
    pages = traffic.to("GET", "/v2/images")
    assert len(pages) == 3  # 3 + 3 + 1, the last page has no `next`
    assert all("limit=3" in page.path for page in pages)
    assert "marker=" not in pages[0].path
    assert all("marker=" in page.path for page in pages[1:])
    # Newest first by default, as Glance sorts.
    assert [image["name"] for image in listed] == [f"page-{n}" for n in reversed(range(7))]

    traffic.clear()
    assert len(list(glance.images.list(page_size=3, limit=4))) == 4
    assert len(traffic.to("GET", "/v2/images")) == 2


def test_list_filters(glance: GlanceClient, glance_a: GlanceClient) -> None:
    _create(glance, name="fedora", tags=["linux", "rpm"], os_distro="fedora")
    _create(glance, name="debian", tags=["linux", "deb"], os_distro="debian")
    _create(glance, name="windows", visibility="private", os_distro="windows")
    _create(glance, name="public", visibility="public", **{DOTTED: "abc"})
    _create(glance_a, name="mine")

    def names(**filters: Any) -> set[str]:
        return _names(glance.images.list(filters=filters))

    assert names(name="fedora") == {"fedora"}
    assert names(tag=["linux"]) == {"fedora", "debian"}
    assert names(tag=["linux", "deb"]) == {"debian"}
    assert names(visibility="private") == {"windows"}
    assert names(visibility="public") == {"public"}
    assert names(os_distro="debian") == {"debian"}
    assert names(os_distro="in:fedora,windows") == {"fedora", "windows"}
    assert names(**{DOTTED: "abc"}) == {"public"}
    assert names(owner="project-a") == {"mine"}
    assert names(name="nothing") == set()
    # project-a sees its own image and the public one, not admin's shared or private ones.
    assert _names(glance_a.images.list()) == {"mine", "public"}


def test_update_sends_a_v21_json_patch(glance: GlanceClient, traffic: Traffic) -> None:
    image = _create(
        glance, name="before", tags=["keep"], os_distro="fedora", os_version="39", ramdisk="x"
    )
    traffic.clear()

    updated = glance.images.update(
        image["id"],
        remove_props=["ramdisk", "not-there"],
        name="after",
        min_disk=10,
        os_version="40",
        **{"hw.disk_bus": "scsi"},
    )

    (patch,) = traffic.to("PATCH", "/v2/images/")
    assert patch.status == 200
    assert patch.request_headers["content-type"] == PATCH_V21
    operations = patch.json_body()
    assert operations[-1] == {"op": "replace", "path": "/tags", "value": ["keep"]}
    assert {"op": "remove", "path": "/ramdisk"} in operations
    assert {"op": "add", "path": "/hw.disk_bus", "value": "scsi"} in operations
    assert {"op": "replace", "path": "/os_version", "value": "40"} in operations

    assert updated["name"] == "after"
    assert updated["min_disk"] == 10
    assert updated["os_version"] == "40"
    assert updated["hw.disk_bus"] == "scsi"
    assert updated["os_distro"] == "fedora"
    assert "ramdisk" not in updated
    assert updated["tags"] == ["keep"]
    glance.images.model(**dict(updated))


def test_update_refuses_read_only_attributes(glance: GlanceClient) -> None:
    image = _create(glance, name="ro")
    with pytest.raises(exc.HTTPForbidden):
        glance.images.update(image["id"], status="active")
    assert glance.images.get(image["id"])["status"] == "queued"


def test_tags_add_twice_and_delete(glance: GlanceClient) -> None:
    image_id = _create(glance, name="tagged")["id"]

    glance.image_tags.update(image_id, "alpha")
    glance.image_tags.update(image_id, "alpha")
    glance.image_tags.update(image_id, "beta")
    assert sorted(glance.images.get(image_id)["tags"]) == ["alpha", "beta"]

    glance.image_tags.delete(image_id, "alpha")
    assert glance.images.get(image_id)["tags"] == ["beta"]
    with pytest.raises(exc.HTTPNotFound):
        glance.image_tags.delete(image_id, "alpha")


def test_members_share_accept_and_revoke(
    glance_a: GlanceClient, glance_b: GlanceClient, glance_as: GlanceFactory
) -> None:
    image_id = _create(glance_a, name="shared-by-a")["id"]
    assert _names(glance_b.images.list()) == set()

    member = glance_a.image_members.create(image_id, "project-b")  # validated by warlock
    assert member["member_id"] == "project-b"
    assert member["image_id"] == image_id
    assert member["status"] == "pending"

    # A pending member sees the image only when it asks for pending ones.
    assert _names(glance_b.images.list()) == set()
    pending = glance_b.images.list(filters={"member_status": "pending", "visibility": "shared"})
    assert _names(pending) == {"shared-by-a"}
    assert glance_b.images.get(image_id)["name"] == "shared-by-a"

    accepted = glance_b.image_members.update(image_id, "project-b", "accepted")
    assert accepted["status"] == "accepted"
    assert _names(glance_b.images.list()) == {"shared-by-a"}
    assert [(m["member_id"], m["status"]) for m in glance_a.image_members.list(image_id)] == [
        ("project-b", "accepted")
    ]
    assert glance_a.image_members.get(image_id, "project-b")["status"] == "accepted"

    # The member may use the image, not change it, share it, or accept for the owner.
    with pytest.raises(exc.HTTPForbidden):
        glance_b.images.update(image_id, name="taken")
    with pytest.raises(exc.HTTPForbidden):
        glance_b.image_members.create(image_id, "project-c")
    with pytest.raises(exc.HTTPForbidden):
        glance_a.image_members.update(image_id, "project-b", "rejected")
    with pytest.raises(exc.HTTPConflict):
        glance_a.image_members.create(image_id, "project-b")
    with pytest.raises(exc.HTTPForbidden):
        glance_as(READER_A).image_members.create(image_id, "project-c")

    glance_a.image_members.delete(image_id, "project-b")
    assert list(glance_a.image_members.list(image_id)) == []
    with pytest.raises(exc.HTTPNotFound):
        glance_b.images.get(image_id)
    with pytest.raises(exc.HTTPNotFound):
        glance_a.image_members.delete(image_id, "project-b")


def test_members_of_a_private_image_are_forbidden(glance_a: GlanceClient) -> None:
    image_id = _create(glance_a, name="private", visibility="private")["id"]
    with pytest.raises(exc.HTTPForbidden):
        glance_a.image_members.create(image_id, "project-b")
    with pytest.raises(exc.HTTPForbidden):
        list(glance_a.image_members.list(image_id))


def test_delete(glance: GlanceClient, traffic: Traffic) -> None:
    image_id = _create(glance, name="doomed")["id"]
    protected_id = _create(glance, name="keeper", protected=True)["id"]

    glance.images.delete(image_id)
    assert traffic.to("DELETE", "/v2/images/")[-1].status == 204
    with pytest.raises(exc.HTTPNotFound):
        glance.images.get(image_id)
    with pytest.raises(exc.HTTPNotFound):
        glance.images.delete(image_id)

    with pytest.raises(exc.HTTPForbidden):
        glance.images.delete(protected_id)
    glance.images.update(protected_id, protected=False)
    glance.images.delete(protected_id)
    assert list(glance.images.list()) == []


def test_versions_document(glance: GlanceClient) -> None:
    resp, body = glance.http_client.get("/versions")
    assert resp.status_code == 200
    ids = [version["id"] for version in body["versions"]]
    assert "v2.0" in ids
    assert all(version_id.startswith("v2.") for version_id in ids)


def test_glance_cli_discovers_v2_and_caches_the_schema(
    glance: GlanceClient,
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`glance --os-image-url URL --os-auth-token T image-show ID`: GET /versions must be 200
    with a v2 entry, then /v2/schemas/image is fetched and cached in ~/.glanceclient."""
    image_id = _create(glance, name="via-cli", os_distro="cirros")["id"]
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("OS_AUTH_URL", "OS_IMAGE_API_VERSION", "OS_IMAGE_URL", "OS_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    common = ["--os-image-url", endpoint, "--os-auth-token", "a-token"]

    OpenStackImagesShell().main([*common, "image-show", image_id])
    shown = capsys.readouterr()
    assert "falling back to v1" not in shown.err
    assert image_id in shown.out
    assert "via-cli" in shown.out
    assert "cirros" in shown.out
    cached = json.loads((tmp_path / ".glanceclient" / "image_schema.json").read_text())
    assert cached == glance.schemas.get("image").raw()

    OpenStackImagesShell().main([*common, "image-list"])
    listed = capsys.readouterr()
    assert image_id in listed.out
    assert "falling back to v1" not in listed.err
