"""The edge when something breaks inside: every 5xx carries the request id, Glance's body, and
`Connection: close`; an unexpected exception is answered, not passed up to Starlette."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import StreamingResponse

from app.config import Settings
from app.db.engine import Database
from app.errors import ServiceUnavailable
from app.main import create_app
from tests.identities import A

_GENERATED_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Boom(Exception):
    pass


@pytest.fixture
def failing_app(settings: Settings, db: Database) -> FastAPI:
    """The real app plus routes that fail the ways routes can."""
    app = create_app(settings, database=db)

    @app.get("/v2/boom")
    async def boom() -> None:
        raise Boom("a bug")

    @app.post("/v2/boom-in-thread")
    def boom_in_thread() -> None:
        raise Boom("a bug in a worker thread")

    @app.get("/v2/unavailable")
    async def unavailable() -> None:
        raise ServiceUnavailable("The store is away.")

    @app.get("/v2/boom-mid-body")
    async def boom_mid_body() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"partial"
            raise Boom("after the status line")

        return StreamingResponse(body())

    return app


@pytest.fixture
def failing(failing_app: FastAPI) -> Iterator[TestClient]:
    # The exception must not reach the client side: the edge answers it.
    with TestClient(failing_app, raise_server_exceptions=True) as test_client:
        yield test_client


def test_unexpected_exception_is_glances_500_with_the_callers_request_id(
    failing: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="app.api.middleware"):
        response = failing.get(
            "/v2/boom",
            headers={**A, "X-Openstack-Request-Id": "abc", "Accept": "application/json"},
        )

    assert response.status_code == 500
    assert response.headers["x-openstack-request-id"] == "req-abc"
    assert response.headers["connection"] == "close"
    assert response.json() == {
        "message": "The server has either erred or is incapable of performing the requested "
        "operation.<br /><br />\n\n\n",
        "code": "500 Internal Server Error",
        "title": "Internal Server Error",
    }
    [record] = [r for r in caplog.records if r.name == "app.api.middleware"]
    assert record.getMessage() == "unexpected error on GET /v2/boom (req-abc)"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


def test_unexpected_exception_without_a_request_id_gets_a_new_one(failing: TestClient) -> None:
    response = failing.post("/v2/boom-in-thread", headers=A)

    assert response.status_code == 500
    assert _GENERATED_ID.match(response.headers["x-openstack-request-id"])
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "text/html; charset=UTF-8"
    assert "<h1>500 Internal Server Error</h1>" in response.text


def test_request_id_already_prefixed_is_kept(failing: TestClient) -> None:
    response = failing.get("/v2/boom", headers={**A, "X-Openstack-Request-Id": "req-xyz"})
    assert response.headers["x-openstack-request-id"] == "req-xyz"


def test_a_deliberate_5xx_also_closes_the_connection(failing: TestClient) -> None:
    response = failing.get("/v2/unavailable", headers={**A, "Accept": "*/*"})

    assert response.status_code == 503
    assert response.headers["connection"] == "close"
    assert response.headers["x-openstack-request-id"].startswith("req-")
    assert "<h1>503 Service Unavailable</h1>" in response.text
    assert "The store is away." in response.text


def test_4xx_and_2xx_keep_the_connection(failing: TestClient) -> None:
    assert "connection" not in failing.get("/v2/images", headers=A).headers
    assert "connection" not in failing.get("/v2/images/nope", headers=A).headers


def test_failure_after_the_response_started_is_not_answered_twice(failing: TestClient) -> None:
    # Nothing better is possible once the status line is out: the server cuts the connection.
    with pytest.raises(Boom):
        failing.get("/v2/boom-mid-body", headers=A)


@pytest.mark.parametrize(
    "path", ["/v2/images/a%0Ab", "/v2/images/%0A", "/v2/images%0A", "/v2/images/x/file%0A"]
)
def test_newlines_in_the_path_are_not_swallowed(client: TestClient, path: str) -> None:
    # `$` in a route pattern matches before a final newline; a versions document (300) or a
    # redirect (307) would be as wrong as listing images.
    response = client.get(path, headers={"Accept": "application/json"})
    assert response.status_code == 404, response.text
    assert response.json()["title"] == "Not Found"


def test_an_unrouted_method_is_405_even_with_a_body(client: TestClient) -> None:
    response = client.request("DELETE", "/v2/images", content=b"{}")
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
