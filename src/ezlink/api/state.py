"""Typed state: what the app holds for every request, and what one request learned.

``AppState`` is built once by ``create_app`` and read through ``app_state``;
``RequestFacts`` is made by the edge middleware for each request, filled in by
auth and the route (who, which model, how much), and read by the access log
once the response is sent. Nothing else travels on ``app.state`` or
``request.state``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection
from starlette.types import Scope

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ezlink.accounts.service import Accounts
    from ezlink.api.auth import Authenticator, Principal
    from ezlink.config import Settings
    from ezlink.engine.registry import ModelRegistry
    from ezlink.ops.loading import ModelLoader
    from ezlink.ops.metrics import Metrics
    from ezlink.ops.readiness import ReadinessCheck


@dataclass
class AppState:
    settings: Settings
    registry: ModelRegistry
    metrics: Metrics
    loader: ModelLoader
    accounts: Accounts
    authenticator: Authenticator
    # name → async check that raises when a dependency is unreachable (ops.readiness).
    readiness_checks: dict[str, ReadinessCheck] = field(default_factory=dict)


def state_of(app: Starlette) -> AppState:
    state = app.state.ezlink
    assert isinstance(state, AppState)
    return state


def app_state(connection: HTTPConnection) -> AppState:
    """The app's state, from a request."""
    return state_of(connection.app)


@dataclass
class RequestFacts:
    """What the access log and metrics say of one request."""

    request_id: str
    principal: Principal | None = None
    model: str | None = None
    inputs: int | None = None
    tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


FACTS_KEY = "ezlink.facts"


def attach_facts(scope: Scope, facts: RequestFacts) -> None:
    scope.setdefault("state", {})[FACTS_KEY] = facts


def facts_in(scope: Scope) -> RequestFacts | None:
    facts = scope.get("state", {}).get(FACTS_KEY)
    return facts if isinstance(facts, RequestFacts) else None


def request_facts(connection: HTTPConnection) -> RequestFacts:
    """This request's facts (made by the edge middleware, which every request passes)."""
    facts = facts_in(connection.scope)
    assert facts is not None, "the edge middleware makes the facts of every request"
    return facts
