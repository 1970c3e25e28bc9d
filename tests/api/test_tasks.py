"""The task API: `GET /v2/tasks` (filters, order, paging), `GET /v2/tasks/{id}`, an image's tasks,
the task schemas, and what `POST` and `DELETE` answer; compared with Glance's recorded answers
where there is one.

One deliberate difference: Glance lets only admins use the task API, Glint lets a project see its
own tasks (so the recorded 403 of a member's list is not replayed).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import col, select

from app.config import Settings
from app.db.base import utcnow
from app.db.engine import Database
from app.main import create_app
from app.tasks import repository
from app.tasks.models import FINISHED, Task, TaskStatus
from app.tasks.query import SORT_KEYS
from app.tasks.repository import TaskRepository
from tests.fidelity.samples import SAMPLES, Exchange, exchange
from tests.fidelity.test_replay import seed
from tests.identities import ADMIN, READER_A, A, B, identity

NO_ROLES = identity("project-a", "")
# Just after the recorded session: its tasks are all still listed then.
RECORDED_CLOCK = datetime(2026, 11, 24, 14, 53, 10)
LIST_AS_ADMIN = "GET /v2/tasks as admin (limit=3)"
SHOW_AS_ADMIN = "GET /v2/tasks/{id} as admin"
IMAGE_TASKS = {
    "15-import-glance-direct.txt": "tasks of that image",
    "16-import-web-download.txt": "tasks of that image",
    "18-tasks.txt": "GET /v2/images/{id}/tasks as owner (image-tasks API, v2.12+)",
}


def add_task(
    db: Database,
    *,
    owner: str | None = "project-a",
    type: str = "api_image_import",
    status: TaskStatus = TaskStatus.PENDING,
    image_id: str | None = None,
    user_id: str | None = "user-a",
    request_id: str | None = None,
    input: dict[str, Any] | None = None,
    message: str | None = None,
    result: dict[str, Any] | None = None,
    **pinned: Any,
) -> str:
    """A task created and moved to `status` by the repository, as the import code would; then
    `pinned` columns (the id, the times the clock chose) set to the values a test needs."""
    with db.session() as session:
        tasks = TaskRepository(session)
        task = tasks.add(
            type=type,
            owner=owner,
            user_id=user_id,
            request_id=request_id,
            image_id=image_id,
            input=input or {},
        )
        if status != TaskStatus.PENDING:
            assert tasks.start(task.id)
        if status in FINISHED:
            assert tasks.finish(task.id, status, message=message, result=result)
        if pinned:
            session.execute(sa.update(Task).where(col(Task.id) == task.id).values(**pinned))
        return str(pinned.get("id", task.id))


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.removesuffix("Z"))


def add_recorded_task(db: Database, shown: dict[str, Any]) -> None:
    """A task as a recording shows it, in whichever view: what it shows, the rest empty."""
    add_task(
        db,
        owner=shown["owner"],
        type=shown["type"],
        status=TaskStatus(shown["status"]),
        image_id=shown.get("image_id"),
        user_id=shown.get("user_id"),
        request_id=shown.get("request_id"),
        input=shown.get("input"),
        message=shown.get("message"),
        result=shown.get("result"),
        id=shown["id"],
        created_at=_moment(shown["created_at"]),
        updated_at=_moment(shown["updated_at"]),
        expires_at=_moment(shown.get("expires_at")),
    )


def recorded_body(file_name: str, title: str) -> Any:
    return json.loads(exchange(file_name, title).response_body)


@pytest.fixture
def recorded_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded session's time, so that its tasks have not expired."""
    monkeypatch.setattr(repository, "utcnow", lambda: RECORDED_CLOCK)


@pytest.fixture
def recorded_tasks(db: Database, recorded_clock: None) -> None:
    """The recorded session's tasks, each from its fullest recorded view, and their images."""
    for file_name, title in IMAGE_TASKS.items():
        [task] = recorded_body(file_name, title)["tasks"]
        seed(db, task["image_id"], name="imported", disk_format="raw", container_format="bare")
        add_recorded_task(db, task)
    add_recorded_task(db, recorded_body("18-tasks.txt", SHOW_AS_ADMIN))
    # Only the list shows the last one.
    listed = recorded_body("18-tasks.txt", LIST_AS_ADMIN)["tasks"]
    add_recorded_task(db, next(t for t in listed if t["id"].startswith("76cee94e")))


def send(client: TestClient, sample: Exchange) -> Any:
    return client.request(sample.method, sample.path, headers=sample.headers, content=sample.body)


def assert_recorded_answer(client: TestClient, file_name: str, title: str) -> None:
    """Same status, media type and body, byte for byte (so keys in Glance's order too)."""
    sample = exchange(file_name, title)
    response = send(client, sample)
    assert response.status_code == sample.status, response.text
    assert response.headers["content-type"] == sample.response_headers["content-type"]
    assert response.text == sample.response_body


def ids(client: TestClient, url: str, headers: dict[str, str]) -> list[str]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()["tasks"]]


def follow(client: TestClient, url: str, headers: dict[str, str]) -> list[str]:
    """Every page, by the `next` links, as a client would."""
    found: list[str] = []
    for _ in range(100):
        page = client.get(url, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        found += [task["id"] for task in body["tasks"]]
        if "next" not in body:
            return found
        url = body["next"]
    raise AssertionError("paging did not end")


def bad_request(client: TestClient, url: str, message: str) -> None:
    response = client.get(url, headers=ADMIN)
    assert response.status_code == 400, response.text
    assert f"  {message}<br /><br />" in response.text


# --- recorded answers ------------------------------------------------------------------------


@pytest.mark.usefixtures("recorded_tasks")
@pytest.mark.parametrize(
    ("file_name", "title"),
    [
        ("18-tasks.txt", LIST_AS_ADMIN),
        ("18-tasks.txt", SHOW_AS_ADMIN),
        ("18-tasks.txt", "GET /v2/tasks/{unknown} -> 404"),
        ("18-tasks.txt", "POST /v2/tasks as member -> 403"),
        *IMAGE_TASKS.items(),
    ],
)
def test_recorded_answers(client: TestClient, file_name: str, title: str) -> None:
    assert_recorded_answer(client, file_name, title)


@pytest.mark.parametrize("name", ["task", "tasks"])
def test_schemas_are_glances(client: TestClient, name: str) -> None:
    response = client.get(f"/v2/schemas/{name}", headers=A)
    assert response.status_code == 200
    assert response.json() == json.loads((SAMPLES / "schemas" / f"{name}.json").read_text())
    assert response.json() == recorded_body("13-schemas.txt", f"GET /v2/schemas/{name}")


# --- who sees what -----------------------------------------------------------------------------


@pytest.mark.usefixtures("recorded_tasks")
def test_a_project_lists_its_own_tasks_and_an_admin_all(client: TestClient) -> None:
    newest_first = ["0454fbb3", "cb30b2dd", "76cee94e", "46d88501", "8d966996"]
    listed = [task_id[:8] for task_id in ids(client, "/v2/tasks", ADMIN)]
    assert listed == newest_first
    of_a = [task_id for task_id in newest_first if task_id != "0454fbb3"]
    assert [task_id[:8] for task_id in ids(client, "/v2/tasks", A)] == of_a
    assert [task_id[:8] for task_id in ids(client, "/v2/tasks", READER_A)] == of_a
    assert ids(client, "/v2/tasks", B) == []


def test_a_caller_without_a_role_may_not_use_tasks(client: TestClient, db: Database) -> None:
    task_id = add_task(db)
    for url in ("/v2/tasks", f"/v2/tasks/{task_id}"):
        response = client.get(url, headers=NO_ROLES)
        assert response.status_code == 403, url
        assert "You are not authorized to complete tasks_api_access action." in response.text


@pytest.mark.usefixtures("recorded_tasks")
def test_show_is_for_the_owning_project_and_admins(client: TestClient) -> None:
    admins = recorded_body("18-tasks.txt", SHOW_AS_ADMIN)["id"]
    of_a = recorded_body("16-import-web-download.txt", "tasks of that image")["tasks"][0]["id"]
    assert client.get(f"/v2/tasks/{of_a}", headers=A).status_code == 200
    assert client.get(f"/v2/tasks/{of_a}", headers=READER_A).status_code == 200
    assert client.get(f"/v2/tasks/{of_a}", headers=ADMIN).status_code == 200
    for headers, task_id in ((B, of_a), (A, admins)):
        response = client.get(f"/v2/tasks/{task_id}", headers=headers)
        assert response.status_code == 404
        assert f"Could not find task {task_id}<br />" in response.text


def test_show_has_every_field_the_task_has(client: TestClient, db: Database) -> None:
    pending = add_task(db, user_id=None, input={"import_from": "http://example.com/x"})
    body = client.get(f"/v2/tasks/{pending}", headers=A).json()
    # Glance leaves out what a task does not have (yet): no image, request, user or expiry.
    assert list(body) == [
        *("id", "input", "type", "status", "owner", "message", "result"),
        *("created_at", "updated_at", "self", "schema"),
    ]
    assert (body["status"], body["message"], body["result"]) == ("pending", "", None)
    done = add_task(
        db,
        status=TaskStatus.FAILURE,
        image_id="966b07fe-a8e0-4d6e-b2a4-68c9a2105b17",
        request_id="req-1",
        message="Task failed due to Internal Error",
    )
    body = client.get(f"/v2/tasks/{done}", headers=A).json()
    assert list(body)[-4:] == ["image_id", "request_id", "user_id", "expires_at"]
    assert body["message"] == "Task failed due to Internal Error"


def test_expired_tasks_are_gone(client: TestClient, db: Database) -> None:
    image_id = "e19ec047-d6a5-4c90-9d9b-06d655ee7af7"
    seed(db, image_id, name="imported")
    expired = add_task(
        db,
        status=TaskStatus.SUCCESS,
        image_id=image_id,
        expires_at=utcnow() - timedelta(seconds=1),
    )
    listed = add_task(db, status=TaskStatus.SUCCESS, image_id=image_id)
    assert ids(client, "/v2/tasks", A) == [listed]
    assert ids(client, f"/v2/images/{image_id}/tasks", A) == [listed]
    assert client.get(f"/v2/tasks/{expired}", headers=A).status_code == 404


# --- an image's tasks ----------------------------------------------------------------------------


@pytest.fixture
def image_with_tasks(db: Database) -> str:
    """A public image of project B with tasks of two projects, and a task of another image."""
    image_id = "57e47579-2580-41a1-bfc2-ac3099873ee0"
    seed(db, image_id, name="shared-out", owner="project-b", visibility="public")
    start = utcnow() - timedelta(minutes=10)
    for minutes, owner in ((1, "project-b"), (2, "project-a"), (3, "project-b")):
        add_task(db, owner=owner, image_id=image_id, created_at=start + timedelta(minutes=minutes))
    add_task(db, owner="project-b", image_id="66f27f3f-fd07-4dc3-b3d9-a81f6990c187")
    return image_id


def test_image_tasks_are_the_callers_newest_first(
    client: TestClient, db: Database, image_with_tasks: str
) -> None:
    url = f"/v2/images/{image_with_tasks}/tasks"

    def owners(headers: dict[str, str]) -> list[tuple[str | None, str]]:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        return [(task["owner"], task["created_at"]) for task in response.json()["tasks"]]

    everyone = owners(ADMIN)
    assert [owner for owner, _ in everyone] == ["project-b", "project-a", "project-b"]
    assert [created for _, created in everyone] == sorted(
        (created for _, created in everyone), reverse=True
    )
    assert owners(B) == [everyone[0], everyone[2]]
    assert owners(A) == [everyone[1]]


def test_image_tasks_of_an_image_the_caller_cannot_see(client: TestClient, db: Database) -> None:
    private = "583e0f4a-c2ef-4f9b-a7b7-571a174897e8"
    seed(db, private, name="private-one", visibility="private")
    add_task(db, image_id=private)
    assert client.get(f"/v2/images/{private}/tasks", headers=A).status_code == 200
    for headers, image_id in (
        (B, private),
        (A, "00000000-0000-0000-0000-000000000000"),
    ):
        response = client.get(f"/v2/images/{image_id}/tasks", headers=headers)
        assert response.status_code == 404
        # Glance's bare 404: no message of its own.
        assert "  The resource could not be found.<br />" in response.text


# --- filters, order, paging --------------------------------------------------------------------


def test_filters(client: TestClient, db: Database) -> None:
    failed = add_task(db, status=TaskStatus.FAILURE, image_id="image-1")
    legacy = add_task(db, type="import", status=TaskStatus.PROCESSING, owner="project-b")
    pending = add_task(db, user_id="user-z", request_id="req-9")
    assert ids(client, "/v2/tasks?status=failure", ADMIN) == [failed]
    assert ids(client, "/v2/tasks?status=processing&type=import", ADMIN) == [legacy]
    assert ids(client, "/v2/tasks?type=api_image_import", ADMIN) == [pending, failed]
    assert ids(client, "/v2/tasks?type=location_import", ADMIN) == []
    # Glance filters on any column by exact value.
    assert ids(client, "/v2/tasks?owner=project-b", ADMIN) == [legacy]
    assert ids(client, "/v2/tasks?image_id=image-1", ADMIN) == [failed]
    assert ids(client, "/v2/tasks?user_id=user-z&request_id=req-9", ADMIN) == [pending]
    assert ids(client, f"/v2/tasks?id={legacy}", ADMIN) == [legacy]
    # A project's filters never reach beyond its tasks.
    assert ids(client, "/v2/tasks?owner=project-b", A) == []
    # Unknown parameters are ignored, as by Glance.
    assert ids(client, "/v2/tasks?colour=blue&status=failure", ADMIN) == [failed]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", "Invalid status value: done"),
        ("status=", "Invalid status value: "),
        ("type=api_import", "Invalid type value: api_import"),
        ("sort_key=name", "Sort key supplied was not valid."),
        ("sort_key=deleted", "Sort key supplied was not valid."),
        ("sort_dir=up", "Invalid sort direction: up"),
        ("limit=abc", "limit param must be an integer"),
        ("limit=-1", "limit param must be positive"),
        ("marker=not-a-uuid", "Invalid marker format"),
        (
            "marker=00000000-0000-0000-0000-000000000000",
            "Task with the given id 00000000-0000-0000-0000-000000000000 was not found",
        ),
    ],
)
def test_bad_list_parameters(client: TestClient, query: str, message: str) -> None:
    bad_request(client, f"/v2/tasks?{query}", message)


def test_another_projects_task_is_no_marker(client: TestClient, db: Database) -> None:
    of_b = add_task(db, owner="project-b")
    response = client.get(f"/v2/tasks?marker={of_b}", headers=A)
    assert response.status_code == 400
    assert f"Task with the given id {of_b} was not found" in response.text


@pytest.fixture
def varied_tasks(db: Database) -> list[dict[str, Any]]:
    """Tasks that differ (and tie, and lack values) in every sort key, as rows."""
    start = utcnow() - timedelta(hours=1)
    values = [
        # type, status, owner, image_id, request_id, user_id, minutes after start
        ("import", TaskStatus.SUCCESS, "project-b", "image-2", "req-2", "user-b", 0),
        ("api_image_import", TaskStatus.FAILURE, None, None, None, None, 1),
        ("api_image_import", TaskStatus.PENDING, "project-a", "image-1", "req-1", "user-a", 1),
        ("import", TaskStatus.PROCESSING, "project-a", None, "req-3", None, 2),
        ("api_image_import", TaskStatus.SUCCESS, "project-c", "image-1", None, "user-a", 3),
        ("api_image_import", TaskStatus.PENDING, None, "image-3", "req-1", "user-c", 3),
        ("import", TaskStatus.FAILURE, "project-b", "image-2", "req-4", "user-b", 5),
    ]
    for type_, status, owner, image_id, request_id, user_id, minutes in values:
        created = start + timedelta(minutes=minutes)
        add_task(
            db,
            type=type_,
            status=status,
            owner=owner,
            image_id=image_id,
            request_id=request_id,
            user_id=user_id,
            created_at=created,
            updated_at=created + timedelta(seconds=(minutes * 7) % 4),
        )
    with db.session() as session:
        return [task.model_dump() for task in session.exec(select(Task)).all()]


# Before every value, as the server orders a missing one.
_MISSING: dict[str, Any] = {"expires_at": datetime(1970, 1, 1)}


def _in_order(tasks: list[dict[str, Any]], sort_key: str, sort_dir: str) -> list[str]:
    keys = [sort_key, *(key for key in ("created_at", "id") if key != sort_key)]
    ordered = sorted(
        tasks,
        key=lambda task: [
            task[key] if task[key] is not None else _MISSING.get(key, "") for key in keys
        ],
        reverse=sort_dir == "desc",
    )
    return [task["id"] for task in ordered]


@pytest.mark.parametrize("sort_dir", ["asc", "desc"])
@pytest.mark.parametrize("sort_key", SORT_KEYS)
def test_every_sort_key_orders_and_pages(
    client: TestClient, varied_tasks: list[dict[str, Any]], sort_key: str, sort_dir: str
) -> None:
    expected = _in_order(varied_tasks, sort_key, sort_dir)
    sort = f"sort_key={sort_key}&sort_dir={sort_dir}"
    assert ids(client, f"/v2/tasks?{sort}", ADMIN) == expected
    assert follow(client, f"/v2/tasks?limit=2&{sort}", ADMIN) == expected


def test_default_order_is_newest_first(
    client: TestClient, varied_tasks: list[dict[str, Any]]
) -> None:
    assert ids(client, "/v2/tasks", ADMIN) == _in_order(varied_tasks, "created_at", "desc")
    assert ids(client, "/v2/tasks?sort_dir=asc", ADMIN) == _in_order(
        varied_tasks, "created_at", "asc"
    )


def test_links(client: TestClient, varied_tasks: list[dict[str, Any]]) -> None:
    order = _in_order(varied_tasks, "status", "asc")
    query = "sort_key=status&limit=3&sort_dir=asc"
    page = client.get(f"/v2/tasks?{query}", headers=ADMIN).json()
    assert page["first"] == f"/v2/tasks?{query}"
    assert page["next"] == f"/v2/tasks?{query}&marker={order[2]}"
    assert page["schema"] == "/v2/schemas/tasks"
    second = client.get(page["next"], headers=ADMIN).json()
    assert [task["id"] for task in second["tasks"]] == order[3:6]
    assert second["first"] == page["first"]
    last = client.get(second["next"], headers=ADMIN).json()
    assert [task["id"] for task in last["tasks"]] == order[6:]
    assert "next" not in last
    empty = client.get("/v2/tasks?limit=0", headers=ADMIN).json()
    assert (empty["tasks"], "next" in empty) == ([], False)


def test_page_size_limits(
    settings: Settings, db: Database, varied_tasks: list[dict[str, Any]]
) -> None:
    limits = settings.limits.model_copy(update={"limit_param_default": 4, "api_limit_max": 5})
    app = create_app(settings.model_copy(update={"limits": limits}), database=db)
    order = _in_order(varied_tasks, "created_at", "desc")
    with TestClient(app) as client:
        assert ids(client, "/v2/tasks", ADMIN) == order[:4]
        capped = client.get("/v2/tasks?limit=100", headers=ADMIN).json()
    assert [task["id"] for task in capped["tasks"]] == order[:5]
    # A page as long as the cap is a full one.
    assert capped["next"] == f"/v2/tasks?limit=100&marker={order[4]}"


# --- create and delete -------------------------------------------------------------------------


def test_delete_and_other_methods_are_not_allowed(client: TestClient, db: Database) -> None:
    """Tasks go when they expire; Glance too answers DELETE with 405 and `Allow: GET`."""
    task_id = add_task(db)
    for method, url, allowed in (
        ("DELETE", f"/v2/tasks/{task_id}", "GET"),
        ("PUT", f"/v2/tasks/{task_id}", "GET"),
        ("PUT", "/v2/tasks", "GET, POST"),
        ("DELETE", "/v2/tasks", "GET, POST"),
    ):
        response = client.request(method, url, headers=ADMIN)
        assert (response.status_code, response.headers["allow"]) == (405, allowed), (method, url)
    assert client.get(f"/v2/tasks/{task_id}", headers=A).status_code == 200


@pytest.mark.parametrize("headers", [A, READER_A, B])
def test_only_admins_create_tasks(client: TestClient, headers: dict[str, str]) -> None:
    body = {"type": "import", "input": {"import_from": "http://example.com/image.raw"}}
    response = client.post("/v2/tasks", json=body, headers=headers)
    assert response.status_code == 403
    assert "You are not authorized to complete tasks_api_access action." in response.text
    assert ids(client, "/v2/tasks", ADMIN) == []
