"""What the client tests share: a recorder of the HTTP exchanges a client makes, and the
keystoneauth session both clients use to send identity headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from glanceclient.v2.client import Client as GlanceClient
from keystoneauth1 import noauth, session
from openstack.connection import Connection

# Fixtures that build a client for an identity (the headers of tests.identities).
GlanceFactory = Callable[[dict[str, str]], GlanceClient]


class SdkFactory(Protocol):
    def __call__(self, headers: dict[str, str], *, base: str | None = None) -> Connection: ...


@dataclass(frozen=True)
class Exchange:
    """One request a client sent and the status it got back."""

    method: str
    path: str  # path and query, as sent
    status: int
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    body: bytes | None

    def json_body(self) -> Any:
        assert self.body is not None
        return json.loads(self.body)


@dataclass
class Traffic:
    """Every exchange made by the requests sessions it is attached to, in order."""

    exchanges: list[Exchange] = field(default_factory=list)

    def attach(self, http: requests.Session) -> requests.Session:
        http.hooks["response"].append(self._record)
        return http

    def _record(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        request = response.request
        body = request.body if isinstance(request.body, str | bytes) else None
        self.exchanges.append(
            Exchange(
                method=request.method or "",
                path=request.path_url,
                status=response.status_code,
                request_headers={k.lower(): _text(v) for k, v in request.headers.items()},
                response_headers={k.lower(): v for k, v in response.headers.items()},
                body=body.encode() if isinstance(body, str) else body,
            )
        )

    def to(self, method: str, path_prefix: str) -> list[Exchange]:
        """The exchanges with this method whose path (without query) starts with the prefix."""
        return [
            e
            for e in self.exchanges
            if e.method == method and urlsplit(e.path).path.startswith(path_prefix)
        ]

    def clear(self) -> None:
        self.exchanges.clear()


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def keystone_session(endpoint: str, headers: dict[str, str], traffic: Traffic) -> session.Session:
    """A keystoneauth session with the `none` plugin, as `--os-auth-type none` builds.

    keystoneauth adds `additional_headers` after glanceclient has percent-encoded its own, so
    `X-Roles: member,reader` reaches the server with its comma, as keystonemiddleware sets it.
    """
    return session.Session(
        auth=noauth.NoAuth(endpoint=endpoint),
        session=traffic.attach(requests.Session()),
        additional_headers=dict(headers),
    )
