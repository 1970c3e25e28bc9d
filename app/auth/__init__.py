"""Who is calling: the pluggable strategies that turn a request's headers into a RequestContext.

Routers and policy code see only the RequestContext; `build_strategy` is the one place that knows
which strategies exist, so adding one (Keystone, static tokens) touches this package and the
`auth.strategy` setting, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from app.auth.noauth import NoAuthStrategy
from app.config import AuthSettings
from app.context import RequestContext


class AuthStrategy(Protocol):
    async def authenticate(self, headers: Mapping[str, str]) -> RequestContext:
        """The caller's identity; raises Unauthorized (401) when the headers do not establish one.

        `headers` are the request's, looked up by lower-case name. Async so that a strategy may
        ask an identity service without blocking the event loop.
        """
        ...


def build_strategy(settings: AuthSettings) -> AuthStrategy:
    # `settings.strategy` is a Literal, so pydantic has already refused any other name.
    return NoAuthStrategy(settings)


__all__ = ["AuthStrategy", "NoAuthStrategy", "build_strategy"]
