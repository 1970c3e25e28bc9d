"""Generated clients work unmodified: a Python client generated from the committed
openapi/v2.json by openapi-python-client (the version pinned in pyproject.toml's test extra,
with openapi/generator-config.yaml), imported as it comes out and driving a live Glint through
its generated functions only.

The generator runs once per module with `--fail-on-warning`, so a skipped endpoint or an
unsupported media type fails the run. Every call goes through a client with
`raise_on_unexpected_status=True`: a status the document does not declare raises instead of
passing as `parsed=None`. httpx appears only as the generated client's own event hooks, to check
what went over the wire (the vendor PATCH media type, the Range header, repeated `tag`s).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.identities import A, B

pytestmark = pytest.mark.clients

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi" / "v2.json"
CONFIG = ROOT / "openapi" / "generator-config.yaml"
PACKAGE = "glint_client"  # package_name_override in the config
# The generator installed next to this interpreter (the venv's), never one found on PATH.
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PATCH_V21 = "application/openstack-images-v2.1-json-patch"
JSON_ERRORS = {"Accept": "application/json"}  # errors come as HTML or text otherwise
DATA = os.urandom(256 * 1024 + 17)


def _pinned_version() -> str:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    (pin,) = [req for req in extra if req.startswith("openapi-python-client==")]
    return pin.split("==", 1)[1]


def _operations() -> dict[str, str]:
    """The document's operation ids, with the tag of each."""
    document = json.loads(DOCUMENT.read_text())
    return {
        operation["operationId"]: operation.get("tags", ["default"])[0]
        for item in document["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def _module_name(name: str) -> str:
    """openapi-python-client puts an operation in api/<tag>/<operation id>.py, both names
    snake-cased ("images-create_image" -> images_create_image)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass
class Generated:
    """The generated package's modules: `op["images-create_image"]` is the module of that
    operation id (its sync/asyncio functions), `models` and `types` the package's own."""

    client: ModuleType
    models: ModuleType
    types: ModuleType
    op: dict[str, ModuleType]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    assert GENERATOR.is_file(), f"openapi-python-client is not installed next to {sys.executable}"
    version = subprocess.run(
        [str(GENERATOR), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert version.split()[-1] == _pinned_version(), version
    out = tmp_path_factory.mktemp("generated")
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(DOCUMENT),
            "--config",
            str(CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
            "--fail-on-warning",
        ],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, f"openapi-python-client failed:\n{report}"
    assert "Warning" not in report, report
    sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    try:
        op = {}
        for operation_id, tag in _operations().items():
            module = f"api/{_module_name(tag)}/{_module_name(operation_id)}"
            if (out / PACKAGE / f"{module}.py").is_file():
                op[operation_id] = importlib.import_module(f"{PACKAGE}.{module.replace('/', '.')}")
        yield Generated(
            client=importlib.import_module(f"{PACKAGE}.client"),
            models=importlib.import_module(f"{PACKAGE}.models"),
            types=importlib.import_module(f"{PACKAGE}.types"),
            op=op,
        )
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]
        importlib.invalidate_caches()


@dataclass
class Wire:
    """The requests the generated clients sent, recorded by httpx event hooks."""

    requests: list[httpx.Request] = field(default_factory=list)

    def record(self, request: httpx.Request) -> None:
        self.requests.append(request)

    def last(self, method: str, path: str) -> httpx.Request:
        sent = [r for r in self.requests if r.method == method and r.url.path == path]
        assert sent, f"no {method} {path} was sent"
        return sent[-1]


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def connect(generated: Generated, endpoint: str, wire: Wire) -> Any:
    """A generated client for an identity: the identity headers (and `Accept`) are the
    Client's `headers`, sent with every request, as a deployment's auth_token middleware would
    set them; the token goes in X-Auth-Token through the generated AuthenticatedClient."""

    def make(identity: dict[str, str] | None = None) -> Any:
        return generated.client.AuthenticatedClient(
            base_url=endpoint,
            token="a-token",
            prefix="",
            auth_header_name="X-Auth-Token",
            headers={**JSON_ERRORS, **(identity or {})},
            raise_on_unexpected_status=True,
            httpx_args={"event_hooks": {"request": [wire.record]}},
        )

    return make


@pytest.fixture
def client(connect: Any) -> Any:
    """No identity headers: the server's default (admin) identity."""
    return connect()


def _create(generated: Generated, client: Any, **fields: Any) -> Any:
    m = generated.models
    properties = fields.pop("properties", {})
    body = m.ImageCreateV2(disk_format="raw", container_format="bare", **fields)
    for name, value in properties.items():
        body[name] = value  # custom properties are the model's additional properties
    response = generated.op["images-create_image"].sync_detailed(client=client, body=body)
    assert response.status_code == 201, response.content
    assert isinstance(response.parsed, m.ImageV2)
    return response.parsed


def _upload(generated: Generated, client: Any, image_id: str, data: bytes) -> None:
    body = generated.types.File(payload=io.BytesIO(data), mime_type="application/octet-stream")
    response = generated.op["images-upload_image_data"].sync_detailed(
        image_id, client=client, body=body, x_openstack_image_size=len(data)
    )
    assert response.status_code == 204, response.content


def _show(generated: Generated, client: Any, image_id: str) -> Any:
    response = generated.op["images-show_image"].sync_detailed(image_id, client=client)
    assert response.status_code == 200, response.content
    assert isinstance(response.parsed, generated.models.ImageV2)
    return response.parsed


def _error(generated: Generated, response: Any, status: int) -> Any:
    """The parsed error model of an error response."""
    assert response.status_code == status, response.content
    error = response.parsed
    assert isinstance(error, generated.models.GlintErrorBody), response.content
    assert error.code.startswith(f"{status} "), error
    assert error.title, error
    return error


def test_every_operation_is_generated(generated: Generated) -> None:
    missing = set(_operations()) - set(generated.op)
    assert not missing, f"the generator skipped {sorted(missing)}"
    for operation_id, module in generated.op.items():
        for function in ("sync_detailed", "asyncio_detailed"):
            assert callable(getattr(module, function, None)), (operation_id, function)


def test_image_data_round_trip(generated: Generated, client: Any, wire: Wire) -> None:
    image = _create(generated, client, name="gen-data", properties={"os_distro": "cirros"})
    assert image.status == generated.models.ImageStatus.QUEUED
    assert image["os_distro"] == "cirros"
    download = generated.op["images-download_image_data"]
    empty = download.sync_detailed(image.id, client=client)
    assert empty.status_code == 204

    _upload(generated, client, image.id, DATA)
    put = wire.last("PUT", f"/v2/images/{image.id}/file")
    assert put.headers["content-type"] == "application/octet-stream"
    assert put.headers["x-openstack-image-size"] == str(len(DATA))
    shown = _show(generated, client, image.id)
    assert shown.status == generated.models.ImageStatus.ACTIVE
    assert shown.size == len(DATA)
    assert shown.checksum == hashlib.md5(DATA).hexdigest()
    assert shown.os_hash_algo == "sha512"
    assert shown.os_hash_value == hashlib.sha512(DATA).hexdigest()

    whole = download.sync_detailed(image.id, client=client)
    assert whole.status_code == 200
    assert isinstance(whole.parsed, generated.types.File)
    assert whole.parsed.payload.read() == DATA

    # A byte range: the Range header is a parameter of the generated function.
    part = download.sync_detailed(image.id, client=client, range_="bytes=1000-1999")
    assert wire.last("GET", f"/v2/images/{image.id}/file").headers["range"] == "bytes=1000-1999"
    assert part.status_code == 206
    assert isinstance(part.parsed, generated.types.File)
    assert part.parsed.payload.read() == DATA[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"

    unsatisfiable = download.sync_detailed(
        image.id, client=client, range_=f"bytes={len(DATA) + 10}-"
    )
    _error(generated, unsatisfiable, 416)


def test_json_patch(generated: Generated, client: Any, wire: Wire) -> None:
    m = generated.models
    image = _create(generated, client, name="before", properties={"scratch": "x"})
    body = [
        m.ImagePatchName(op=m.ImagePatchSetOp.REPLACE, path="/name", value="after"),
        m.ImagePatchMinRam(op=m.ImagePatchSetOp.REPLACE, path="/min_ram", value=512),
        m.ImagePatchCustomProperty(op=m.ImagePatchSetOp.ADD, path="/os_distro", value="cirros"),
        m.ImagePatchRemove(op="remove", path="/scratch"),
    ]
    response = generated.op["images-update_image"].sync_detailed(image.id, client=client, body=body)
    assert response.status_code == 200, response.content
    sent = wire.last("PATCH", f"/v2/images/{image.id}")
    assert sent.headers["content-type"] == PATCH_V21
    assert json.loads(sent.content) == [
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "replace", "path": "/min_ram", "value": 512},
        {"op": "add", "path": "/os_distro", "value": "cirros"},
        {"op": "remove", "path": "/scratch"},
    ]
    patched = response.parsed
    assert isinstance(patched, m.ImageV2)
    assert (patched.name, patched.min_ram, patched["os_distro"]) == ("after", 512, "cirros")
    assert "scratch" not in patched
    assert _show(generated, client, image.id).name == "after"

    # A read-only attribute: refused (403) with the typed error.
    refused = generated.op["images-update_image"].sync_detailed(
        image.id,
        client=client,
        body=[
            m.ImagePatchCustomProperty(op=m.ImagePatchSetOp.ADD, path="/os_hash_value", value="x")
        ],
    )
    _error(generated, refused, 403)


def test_tags(generated: Generated, client: Any) -> None:
    image = _create(generated, client, name="tagged", tags=["one"])
    add, delete = generated.op["tags-add_tag"], generated.op["tags-delete_tag"]
    assert add.sync_detailed(image.id, "two", client=client).status_code == 204
    assert add.sync_detailed(image.id, "two", client=client).status_code == 204  # idempotent
    assert sorted(_show(generated, client, image.id).tags) == ["one", "two"]
    assert delete.sync_detailed(image.id, "one", client=client).status_code == 204
    assert _show(generated, client, image.id).tags == ["two"]
    _error(generated, delete.sync_detailed(image.id, "one", client=client), 404)


def test_list_filters_and_paging(generated: Generated, client: Any, wire: Wire) -> None:
    m = generated.models
    list_images = generated.op["images-list_images"]
    made = [
        _create(generated, client, name=f"page-{i}", tags=["paged", f"n{i % 2}"]) for i in range(5)
    ]
    other = _create(generated, client, name="other", visibility=m.ImageCreateV2Visibility.PUBLIC)
    _upload(generated, client, other.id, b"active")

    def listed(**query: Any) -> Any:
        response = list_images.sync_detailed(client=client, **query)
        assert response.status_code == 200, response.content
        assert isinstance(response.parsed, m.ImagesV2)
        return response.parsed

    assert [i.id for i in listed(name="page-3").images] == [made[3].id]
    assert [i.id for i in listed(status="active").images] == [other.id]
    public = m.ImagesListImagesVisibility.PUBLIC
    assert [i.id for i in listed(visibility=public).images] == [other.id]
    both = listed(
        tag=["paged", "n1"],
        sort_key=[m.ImagesListImagesSortKeyItem.NAME],
        sort_dir=[m.ImagesListImagesSortDirItem.ASC],
    )
    assert [i.name for i in both.images] == ["page-1", "page-3"]
    sent = wire.last("GET", "/v2/images")
    assert sent.url.params.get_list("tag") == ["paged", "n1"]
    assert [i.id for i in listed(size_min=1).images] == [other.id]
    assert listed(protected=True).images == []

    # Paging: limit + marker, following each page's `next` link to the end.
    seen: list[str] = []
    page = listed(tag=["paged"], limit=2, sort="name:asc")
    while True:
        seen += [i.id for i in page.images]
        if not isinstance(page.next_, str):
            break
        query = parse_qs(urlsplit(page.next_).query)
        assert query["tag"] == ["paged"]  # `next` keeps the filters
        page = listed(
            tag=query["tag"],
            limit=int(query["limit"][0]),
            sort=query["sort"][0],
            marker=query["marker"][0],
        )
    assert seen == [image.id for image in made]

    bad = list_images.sync_detailed(client=client, created_at="gt:not-a-date")
    assert "created_at" in _error(generated, bad, 400).message


def test_members(generated: Generated, connect: Any) -> None:
    m = generated.models
    owner = connect(A)
    # Headers can also be added to an existing client: with_headers returns a new one.
    member = connect().with_headers(B)
    image = _create(
        generated, owner, name="shared-one", visibility=m.ImageCreateV2Visibility.SHARED
    )
    op = generated.op

    created = op["members-create_member"].sync_detailed(
        image.id, client=owner, body=m.MemberCreateV2(member=B["X-Project-Id"])
    )
    assert created.status_code == 200, created.content
    assert isinstance(created.parsed, m.MemberV2)
    assert created.parsed.status == m.MemberV2Status.PENDING
    assert created.parsed.member_id == B["X-Project-Id"]

    listed = op["members-list_members"].sync_detailed(image.id, client=owner)
    assert listed.status_code == 200
    assert [x.member_id for x in listed.parsed.members] == [B["X-Project-Id"]]

    # Only the member project changes its status, so this request carries B's identity.
    accepted = op["members-update_member"].sync_detailed(
        image.id,
        B["X-Project-Id"],
        client=member,
        body=m.MemberUpdateV2(status=m.MemberUpdateV2Status.ACCEPTED),
    )
    assert accepted.status_code == 200, accepted.content
    assert accepted.parsed.status == m.MemberV2Status.ACCEPTED
    refused = op["members-update_member"].sync_detailed(
        image.id,
        B["X-Project-Id"],
        client=owner,
        body=m.MemberUpdateV2(status=m.MemberUpdateV2Status.REJECTED),
    )
    _error(generated, refused, 403)

    seen_by_b = op["images-list_images"].sync_detailed(
        client=member,
        visibility=m.ImagesListImagesVisibility.SHARED,
        member_status=m.ImagesListImagesMemberStatus.ACCEPTED,
    )
    assert [i.id for i in seen_by_b.parsed.images] == [image.id]
    shown = op["members-show_member"].sync_detailed(image.id, B["X-Project-Id"], client=member)
    assert shown.status_code == 200
    assert shown.parsed.status == m.MemberV2Status.ACCEPTED

    gone = op["members-delete_member"].sync_detailed(image.id, B["X-Project-Id"], client=owner)
    assert gone.status_code == 204
    _error(generated, op["images-show_image"].sync_detailed(image.id, client=member), 404)


def test_delete_and_typed_errors(generated: Generated, client: Any, connect: Any) -> None:
    image = _create(generated, client, name="doomed")
    delete = generated.op["images-delete_image"]
    assert delete.sync_detailed(image.id, client=client).status_code == 204
    show = generated.op["images-show_image"]
    error = _error(generated, show.sync_detailed(image.id, client=client), 404)
    assert error.title == "Not Found"
    _error(generated, delete.sync_detailed(image.id, client=client), 404)
    unknown = "00000000-0000-4000-8000-000000000000"
    _error(generated, show.sync_detailed(unknown, client=client), 404)
    _error(
        generated,
        generated.op["images-download_image_data"].sync_detailed(unknown, client=client),
        404,
    )

    # Identity headers without X-Identity-Status: Confirmed are refused.
    unconfirmed = connect({k: v for k, v in A.items() if k != "X-Identity-Status"})
    _error(generated, generated.op["images-list_images"].sync_detailed(client=unconfirmed), 401)
    # Another project's private image is invisible, not forbidden.
    private = _create(
        generated,
        connect(A),
        name="mine",
        visibility=generated.models.ImageCreateV2Visibility.PRIVATE,
    )
    _error(generated, show.sync_detailed(private.id, client=connect(B)), 404)
