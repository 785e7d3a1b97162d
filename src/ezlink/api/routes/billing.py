"""What a key's holder sees of its team's credits.

GET /v1/dashboard/billing/subscription and /v1/dashboard/billing/usage, in
the shape one-api serves them (chat front-ends such as NextChat and LobeChat
read them to show a balance): `hard_limit_usd` is what the team has left
plus what it spent, `total_usage` what it spent, in cents; so
hard_limit_usd - total_usage / 100 is the available balance. The amounts
are JSON numbers written from the exact decimals (never through a float).
POST /v1/ezlink/redeem adds a redemption code's value to the key's team, once.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ezlink.accounts.money import MICROS_PER_UNIT, format_money
from ezlink.accounts.teams import Team
from ezlink.api.auth import Principal, require_principal
from ezlink.api.state import app_state
from ezlink.errors import InvalidRequestError, NotFoundError

router = APIRouter()


async def _team(request: Request, principal: Principal) -> Team:
    limits = principal.limits
    team_id = None if limits is None else limits.team_id
    team = None
    if team_id is not None:
        team = await app_state(request).accounts.credits.ledger.get_team(team_id)
    if team is None:
        raise NotFoundError("This key belongs to no team: it has no credit balance.")
    return team


def _json(fields: dict[str, object]) -> Response:
    """A JSON object whose Decimal values are written as exact numbers."""
    parts = [
        f"{orjson.dumps(name).decode()}:"
        + (f"{value:f}" if isinstance(value, Decimal) else orjson.dumps(value).decode())
        for name, value in fields.items()
    ]
    return Response("{" + ",".join(parts) + "}", media_type="application/json")


def _units(micros: int) -> Decimal:
    return Decimal(micros) / MICROS_PER_UNIT


@router.get("/v1/dashboard/billing/subscription")
async def subscription(
    request: Request, principal: Principal = Depends(require_principal)
) -> Response:
    team = await _team(request, principal)
    spent = await app_state(request).accounts.credits.ledger.charged_total(team.id)
    limit = _units(team.available + spent)
    return _json(
        {
            "object": "billing_subscription",
            "has_payment_method": True,
            "soft_limit_usd": limit,
            "hard_limit_usd": limit,
            "system_hard_limit_usd": limit,
            "access_until": 0,
        }
    )


@router.get("/v1/dashboard/billing/usage")
async def usage(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    team = await _team(request, principal)
    spent = await app_state(request).accounts.credits.ledger.charged_total(team.id)
    # In cents, as OpenAI's (and one-api's) dashboard answers it.
    return _json({"object": "list", "total_usage": _units(spent) * 100})


@router.post("/v1/ezlink/redeem")
async def redeem(request: Request, principal: Principal = Depends(require_principal)) -> Response:
    """Body {"code": "ezr-..."}: the code's value goes to the key's team, once."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequestError("The body is not valid JSON.") from None
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code:
        raise InvalidRequestError("`code` is required.", param="code")
    team = await _team(request, principal)
    ledger = app_state(request).accounts.credits.ledger
    value = await ledger.redeem(code, team.id, principal.key_id)
    if value is None:
        raise InvalidRequestError(
            "This code is unknown or was already redeemed.", param="code", code="invalid_code"
        )
    updated = await ledger.get_team(team.id)
    assert updated is not None
    return _json(
        {
            "object": "redemption",
            "value": format_money(value),
            "team": updated.name,
            "balance": format_money(updated.balance),
            "available": format_money(updated.available),
        }
    )
