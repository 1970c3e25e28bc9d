"""Auth strategies: chosen by `auth.strategy`, async, and each yields a RequestContext."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.auth import AuthStrategy, NoAuthStrategy, build_strategy
from app.config import AuthSettings
from app.context import RequestContext
from app.errors import Unauthorized
from tests.identities import A


def _authenticate(strategy: AuthStrategy, headers: Mapping[str, str]) -> RequestContext:
    return asyncio.run(strategy.authenticate(headers))


def test_noauth_is_the_default_strategy() -> None:
    assert isinstance(build_strategy(AuthSettings()), NoAuthStrategy)


def test_noauth_without_identity_headers_is_the_default_identity() -> None:
    settings = AuthSettings(
        default_project_id="p", default_user_id="u", default_roles=["Reader", "member"]
    )
    ctx = _authenticate(build_strategy(settings), {"accept": "*/*"})
    assert ctx == RequestContext(project_id="p", user_id="u", roles=frozenset({"reader", "member"}))


def test_noauth_trusts_confirmed_keystone_headers() -> None:
    headers = {k.lower(): v for k, v in A.items()}
    ctx = _authenticate(build_strategy(AuthSettings()), headers)
    assert ctx == RequestContext("project-a", "user-a", frozenset({"member", "reader"}))
    assert not ctx.is_admin


def test_noauth_falls_back_to_the_legacy_header_names() -> None:
    headers = {"x-identity-status": "Confirmed", "x-tenant": "t", "x-user": "u", "x-role": " A ,b"}
    ctx = _authenticate(build_strategy(AuthSettings()), headers)
    assert ctx == RequestContext("t", "u", frozenset({"a", "b"}))


@pytest.mark.parametrize("status", [None, "Invalid", "confirmed"])
def test_noauth_refuses_identity_headers_that_are_not_confirmed(status: str | None) -> None:
    headers = {"x-project-id": "p"} | ({"x-identity-status": status} if status else {})
    with pytest.raises(Unauthorized):
        _authenticate(build_strategy(AuthSettings()), headers)


def test_the_app_awaits_the_strategy_it_was_given(app: FastAPI, client: TestClient) -> None:
    """Routers depend on the AuthStrategy protocol only: any async strategy plugs in."""

    class FixedStrategy:
        async def authenticate(self, headers: Mapping[str, str]) -> RequestContext:
            if headers.get("x-auth-token") != "secret":
                raise Unauthorized()
            await asyncio.sleep(0)  # a real one would ask Keystone here
            return RequestContext("token-project", "token-user", frozenset({"member"}))

    strategy: AuthStrategy = FixedStrategy()
    app.state.auth = strategy

    assert client.get("/v2/images").status_code == 401
    created = client.post("/v2/images", json={"name": "x"}, headers={"X-Auth-Token": "secret"})
    assert created.status_code == 201, created.text
    assert created.json()["owner"] == "token-project"
