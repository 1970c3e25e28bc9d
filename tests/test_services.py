"""The real servers behave as the store tests assume (tests/services.py starts them).

Swift with tempauth on both test accounts, its S3 API through boto3 (path addressing, multipart),
Keystone v3 password logins, and Swift behind Keystone found through the catalog.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import swiftclient
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests.services import SCRIPTS, KeystoneService, SwiftService


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _empty_and_delete(connection: swiftclient.Connection, container: str) -> None:
    _, objects = connection.get_container(container, full_listing=True)
    for item in objects:
        connection.delete_object(container, item["name"])
    connection.delete_container(container)


@pytest.fixture
def s3(swift_service: SwiftService) -> Any:
    return swift_service.s3_client(retries={"max_attempts": 1})


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = _unique("glint-services")
    s3.create_bucket(Bucket=name)
    yield name
    for item in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.mark.parametrize("account", ["user", "other_user"])
def test_swift_tempauth_put_get_and_ranged_get(swift_service: SwiftService, account: str) -> None:
    user, key = (
        (swift_service.user, swift_service.key)
        if account == "user"
        else (swift_service.other_user, swift_service.other_key)
    )
    connection = swiftclient.Connection(
        authurl=swift_service.auth_url, user=user, key=key, retries=0
    )
    url, _ = connection.get_auth()
    expected_account = "AUTH_" + user.split(":")[0]
    assert url == f"http://{swift_service.host}:{swift_service.port}/v1/{expected_account}"
    if account == "user":
        assert url == swift_service.storage_url

    container = _unique("glint-services")
    body = bytes(range(256)) * 4096  # 1 MiB
    connection.put_container(container)
    try:
        # About 2 KB of user metadata: more than the root file system's xattrs would hold.
        metadata = {f"X-Object-Meta-Key{i}": "v" * 250 for i in range(8)}
        connection.put_object(container, "blob", body, headers=metadata)
        headers, got = connection.get_object(container, "blob")
        assert got == body
        assert int(headers["content-length"]) == len(body)
        assert headers["x-object-meta-key7"] == "v" * 250
        headers, part = connection.get_object(
            container, "blob", headers={"Range": "bytes=1000-1999"}
        )
        assert part == body[1000:2000]
        assert headers["content-range"] == f"bytes 1000-1999/{len(body)}"
    finally:
        _empty_and_delete(connection, container)


def test_swift_accounts_are_separate(swift_service: SwiftService) -> None:
    owner = swiftclient.Connection(
        authurl=swift_service.auth_url, user=swift_service.user, key=swift_service.key, retries=0
    )
    other = swiftclient.Connection(
        authurl=swift_service.auth_url,
        user=swift_service.other_user,
        key=swift_service.other_key,
        retries=0,
    )
    container = _unique("glint-services")
    other.put_container(container)
    try:
        names = [item["name"] for item in owner.get_account(full_listing=True)[1]]
        assert container not in names
    finally:
        other.delete_container(container)


def test_s3_put_get_and_ranged_get(s3: Any, bucket: str) -> None:
    s3.head_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="image", Body=b"0123456789", Metadata={"owner": "glint"})
    got = s3.get_object(Bucket=bucket, Key="image")
    assert got["Body"].read() == b"0123456789"
    assert got["Metadata"] == {"owner": "glint"}
    ranged = s3.get_object(Bucket=bucket, Key="image", Range="bytes=2-4")
    assert ranged["Body"].read() == b"234"
    assert ranged["ContentRange"] == "bytes 2-4/10"


def test_s3_multipart_upload(s3: Any, bucket: str) -> None:
    parts = [b"a" * (5 * 1024 * 1024), b"b" * (5 * 1024 * 1024), b"c" * 1000]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")
    done = [
        {
            "PartNumber": number,
            "ETag": s3.upload_part(
                Bucket=bucket, Key="big", UploadId=upload["UploadId"], PartNumber=number, Body=data
            )["ETag"],
        }
        for number, data in enumerate(parts, start=1)
    ]
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload["UploadId"])
    assert [part["PartNumber"] for part in listed["Parts"]] == [1, 2, 3]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="big", UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentLength"] == sum(map(len, parts))
    assert got["ETag"].strip('"').endswith("-3")
    assert got["Body"].read() == b"".join(parts)
    # Multi-delete: boto3 >= 1.36 sends it without Content-MD5, which s3api must accept.
    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}]})
    assert [item["Key"] for item in deleted["Deleted"]] == ["big"]


def _password(keystone_service: KeystoneService) -> v3.Password:
    return v3.Password(
        auth_url=keystone_service.auth_url,
        username=keystone_service.username,
        password=keystone_service.password,
        project_name=keystone_service.project_name,
        user_domain_name=keystone_service.user_domain_name,
        project_domain_name=keystone_service.project_domain_name,
    )


def test_keystone_password_login(keystone_service: KeystoneService) -> None:
    auth = _password(keystone_service)
    session = ks_session.Session(auth=auth)
    assert session.get_token()
    assert "member" in (auth.get_access(session).role_names or [])
    endpoint = session.get_endpoint(service_type="object-store", interface="public")
    project_id = session.get_project_id()
    assert endpoint == f"{keystone_service.swift_proxy_url}/v1/AUTH_{project_id}"


def test_swift_through_keystone(keystone_service: KeystoneService) -> None:
    # swiftclient logs in to Keystone itself only through python-keystoneclient, which the test
    # extras do not install; with a keystoneauth1 session it needs nothing more, and os_options
    # pick the endpoint from the catalog.
    connection = swiftclient.Connection(
        session=ks_session.Session(auth=_password(keystone_service)),
        auth_version="3",
        os_options={
            "service_type": "object-store",
            "endpoint_type": "public",
            "region_name": "RegionOne",
        },
        retries=0,
    )
    url, _ = connection.get_auth()
    assert url.startswith(f"{keystone_service.swift_proxy_url}/v1/AUTH_")
    container = _unique("glint-services")
    connection.put_container(container)
    try:
        connection.put_object(container, "blob", b"through keystone")
        _, got = connection.get_object(container, "blob")
        assert got == b"through keystone"
        _, part = connection.get_object(container, "blob", headers={"Range": "bytes=8-15"})
        assert part == b"keystone"
    finally:
        _empty_and_delete(connection, container)


def test_swift_script_is_a_quick_no_op_when_running(swift_service: SwiftService) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPTS / "swift.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # nothing installed, started or restarted
    # About 0.2 s here; the margin is for a machine shared with other test runs.
    assert elapsed < 10, f"scripts/swift.sh took {elapsed:.1f}s"
