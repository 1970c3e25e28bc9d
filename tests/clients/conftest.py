"""A real Glint server on a free local port, and the two OpenStack clients pointed at it.

The server is uvicorn in a background thread, started once and serving each test's `app`
fixture in turn, so every test gets a fresh app on an emptied database. Clients reach it over
real HTTP: python-glanceclient through its own HTTP client (endpoint + token, as the `glance`
CLI does) and through a keystoneauth session; openstacksdk through a keystoneauth `none`
session, as `openstack --os-auth-type none` does. Every exchange is recorded in `traffic`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import glanceclient
import pytest
import uvicorn
from fastapi import FastAPI
from glanceclient.v2.client import Client as GlanceClient
from openstack.connection import Connection
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.clients.support import GlanceFactory, SdkFactory, Traffic, keystone_session
from tests.identities import A, B


class _CurrentApp:
    """The ASGI app the shared server serves: the running test's `app`, swapped per test
    (one server for the session keeps the run fast; uvicorn takes ~0.2 s to stop). Lifespan
    is off: the app's lifespan only disposes a database it created, and tests pass theirs."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            raise RuntimeError(f"no test is using the Glint test server ({scope['type']})")
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def _server() -> Iterator[tuple[str, _CurrentApp]]:
    current = _CurrentApp()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(current, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            pytest.fail("the Glint test server did not start", pytrace=False)
        time.sleep(0.002)
    try:
        yield f"http://127.0.0.1:{port}", current
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def endpoint(app: FastAPI, _server: tuple[str, _CurrentApp]) -> Iterator[str]:
    """The base URL (no trailing slash) of a live server serving this test's app."""
    url, current = _server
    current.app = app
    try:
        yield url
    finally:
        current.app = None


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def glance(endpoint: str, traffic: Traffic) -> GlanceClient:
    """glanceclient's own HTTP client with a token and no identity headers, so the server's
    default (admin) identity, like `glance --os-image-url URL --os-auth-token TOKEN`."""
    client = glanceclient.Client(endpoint=f"{endpoint}/v2", token="a-token")
    traffic.attach(client.http_client.session)
    return client


@pytest.fixture
def glance_as(endpoint: str, traffic: Traffic) -> GlanceFactory:
    """glanceclient over a keystoneauth session that sends the given identity headers."""

    def make(headers: dict[str, str]) -> GlanceClient:
        return glanceclient.Client("2", session=keystone_session(endpoint, headers, traffic))

    return make


@pytest.fixture
def sdk_as(endpoint: str, traffic: Traffic) -> SdkFactory:
    """openstacksdk with `auth_type none`: it discovers the image API from the endpoint's
    versions document. `base` names the same server another way (another host name)."""

    def make(headers: dict[str, str], *, base: str | None = None) -> Connection:
        url = base or endpoint
        return Connection(
            session=keystone_session(url, headers, traffic),
            auth_type="none",
            auth={"endpoint": url},
        )

    return make


@pytest.fixture
def sdk(sdk_as: SdkFactory) -> Connection:
    """openstacksdk with no identity headers (the server's default admin identity)."""
    return sdk_as({})


@pytest.fixture
def glance_a(glance_as: GlanceFactory) -> GlanceClient:
    return glance_as(A)


@pytest.fixture
def glance_b(glance_as: GlanceFactory) -> GlanceClient:
    return glance_as(B)


@pytest.fixture
def sdk_a(sdk_as: SdkFactory) -> Connection:
    return sdk_as(A)


@pytest.fixture
def sdk_b(sdk_as: SdkFactory) -> Connection:
    return sdk_as(B)
