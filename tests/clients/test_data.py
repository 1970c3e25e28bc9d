"""Image data through the real clients: python-glanceclient streams chunked uploads (1 MiB
chunks, x-openstack-image-size) and verifies downloads by multihash; openstacksdk uploads with
Content-Length and verifies its download by hash too."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from glanceclient.v2.client import Client as GlanceClient
from openstack.connection import Connection

from tests.clients.support import Traffic

pytestmark = pytest.mark.clients

DATA = os.urandom(3 * 1024 * 1024 + 4321)


def test_glanceclient_round_trip(glance: GlanceClient, traffic: Traffic) -> None:
    image = glance.images.create(name="gc-data", disk_format="raw", container_format="bare")
    glance.images.upload(image["id"], io.BytesIO(DATA), image_size=len(DATA))
    (put,) = traffic.to("PUT", f"/v2/images/{image['id']}/file")
    assert put.request_headers.get("transfer-encoding") == "chunked"
    assert put.request_headers.get("x-openstack-image-size") == str(len(DATA))
    shown = glance.images.get(image["id"])
    assert shown["status"] == "active"
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    # glanceclient checks the bytes against os_hash_value while it reads them.
    downloaded = b"".join(glance.images.data(image["id"]))
    assert downloaded == DATA


def test_glanceclient_download_without_data(glance: GlanceClient) -> None:
    image = glance.images.create(name="empty", disk_format="raw", container_format="bare")
    assert glance.images.data(image["id"]).wrapped is None


def test_openstacksdk_round_trip(sdk: Connection, traffic: Traffic) -> None:
    image = sdk.create_image(
        "sdk-data",
        data=DATA,
        disk_format="raw",
        container_format="bare",
        validate_checksum=True,
        wait=True,
    )
    (put,) = traffic.to("PUT", f"/v2/images/{image.id}/file")
    assert put.request_headers.get("content-length") == str(len(DATA))
    assert image.checksum == hashlib.md5(DATA).hexdigest()
    response = sdk.image.download_image(image, stream=False)
    assert response.content == DATA
    assert sdk.image.get_image(image).hash_value == hashlib.sha512(DATA).hexdigest()
