"""The admin API: /admin/keys, /admin/teams, /admin/codes, /admin/ledger and
/admin/usage, for the master key only. Money is sent and shown as decimal
strings ("2.50") of the billing currency."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

from ezlink.accounts.keys import ApiKey, as_utc, utcnow
from ezlink.accounts.money import format_money, parse_money
from ezlink.accounts.service import Accounts
from ezlink.accounts.store.reports import usage_csv
from ezlink.accounts.teams import Team
from ezlink.api.auth import require_admin
from ezlink.api.errors import from_validation_error
from ezlink.api.state import app_state
from ezlink.errors import InvalidRequestError, NotFoundError

router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])


class KeyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: str | None = Field(None, max_length=200)
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    quota_tokens: int | None = Field(None, ge=0)
    # Credits: the paying team (name or id) and the key's own cap ("1.00").
    team: str | None = None
    max_spend: str | None = None


class KeyCreate(KeyFields):
    name: str = Field(min_length=1, max_length=200)


class KeyUpdate(KeyFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    disabled: bool | None = None


def _accounts(request: Request) -> Accounts:
    return app_state(request).accounts


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    balance: str = "0"
    daily_budget: str | None = None
    monthly_budget: str | None = None


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str
    note: str | None = Field(None, max_length=500)
    kind: Literal["topup", "refund", "adjustment"] = "topup"


class CodesCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str
    count: int = Field(1, ge=1, le=10_000)


def money(value: str | None, name: str, *, signed: bool = False) -> int | None:
    """A decimal string as micro-units; 400 naming the field when it is not one."""
    if value is None:
        return None
    try:
        micros = parse_money(value)
    except ValueError as exc:
        raise InvalidRequestError(f"`{name}`: {exc}.", param=name) from None
    if micros < 0 and not signed:
        raise InvalidRequestError(f"`{name}` cannot be negative.", param=name)
    return micros


async def _body(request: Request, schema: type[BaseModel]) -> Any:
    try:
        data = orjson.loads(await request.body())
        return schema.model_validate(data)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("The body is not valid JSON.") from None
    except ValidationError as exc:
        raise from_validation_error(exc) from None


async def _team_or_404(accounts: Accounts, name: str) -> Team:
    team = await accounts.credits.ledger.get_team(name)
    if team is None:
        raise NotFoundError(f"No team `{name}`.", param="team")
    return team


async def _key_or_404(accounts: Accounts, key_id: str) -> ApiKey:
    key = await accounts.store.get_key(key_id)
    if key is None:
        raise NotFoundError(f"No API key `{key_id}`.", param="key_id")
    return key


@router.post("/keys", status_code=201)
async def create_key(request: Request) -> dict[str, Any]:
    """The new key, with its secret in `key`: the only time it is shown."""
    fields = await _body(request, KeyCreate)
    assert isinstance(fields, KeyCreate)
    accounts = _accounts(request)
    team_id = None if fields.team is None else (await _team_or_404(accounts, fields.team)).id
    key, secret = await accounts.store.create_key(
        fields.name,
        owner=fields.owner,
        allowed_models=fields.allowed_models or (),
        rpm=fields.rpm,
        tpm=fields.tpm,
        quota_tokens=fields.quota_tokens,
        expires_at=None if fields.expires_at is None else as_utc(fields.expires_at),
        team_id=team_id,
        max_spend=money(fields.max_spend, "max_spend"),
    )
    return {**key.to_public(), "key": secret}


@router.get("/keys")
async def list_keys(request: Request) -> dict[str, Any]:
    keys = await _accounts(request).store.list_keys()
    return {"object": "list", "data": [key.to_public() for key in keys]}


@router.get("/keys/{key_id}")
async def show_key(key_id: str, request: Request) -> dict[str, Any]:
    return (await _key_or_404(_accounts(request), key_id)).to_public()


@router.patch("/keys/{key_id}")
async def update_key(key_id: str, request: Request) -> dict[str, Any]:
    """Change any of the fields sent; `null` clears a limit or the expiry."""
    accounts = _accounts(request)
    key = await _key_or_404(accounts, key_id)
    fields = await _body(request, KeyUpdate)
    changes = fields.model_dump(exclude_unset=True)
    if changes.get("expires_at") is not None:
        changes["expires_at"] = as_utc(changes["expires_at"])
    if changes.get("name", "") is None or changes.get("disabled", False) is None:
        raise InvalidRequestError("`name` and `disabled` cannot be null.")
    if "max_spend" in changes:
        changes["max_spend"] = money(changes["max_spend"], "max_spend")
    if changes.get("team") is not None:
        changes["team_id"] = (await _team_or_404(accounts, changes.pop("team"))).id
    elif "team" in changes:
        changes["team_id"] = changes.pop("team")
    updated = await accounts.store.update_key(key.id, changes)
    accounts.forget_cached_keys()
    assert updated is not None
    return updated.to_public()


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    """Revoke for good: the key is refused from the next request on."""
    accounts = _accounts(request)
    key = await _key_or_404(accounts, key_id)
    revoked = await accounts.store.revoke_key(key.id)
    accounts.forget_cached_keys()
    assert revoked is not None
    return revoked.to_public()


@router.delete("/keys/{key_id}")
async def delete_key(key_id: str, request: Request) -> dict[str, Any]:
    """Same as revoke: keys are kept, so that their usage keeps its owner."""
    return await revoke_key(key_id, request)


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidRequestError(
            f"`{name}` must be an ISO 8601 date or time.", param=name
        ) from None


@router.post("/teams", status_code=201)
async def create_team(request: Request) -> dict[str, Any]:
    fields: TeamCreate = await _body(request, TeamCreate)
    accounts = _accounts(request)
    team = await accounts.credits.ledger.create_team(
        fields.name,
        balance=money(fields.balance, "balance") or 0,
        daily_budget=money(fields.daily_budget, "daily_budget"),
        monthly_budget=money(fields.monthly_budget, "monthly_budget"),
    )
    return team.to_public(accounts.credits.config.currency)


@router.get("/teams")
async def list_teams(request: Request) -> dict[str, Any]:
    accounts = _accounts(request)
    currency = accounts.credits.config.currency
    teams = await accounts.credits.ledger.list_teams()
    return {"object": "list", "data": [team.to_public(currency) for team in teams]}


@router.get("/teams/{name}")
async def show_team(name: str, request: Request) -> dict[str, Any]:
    accounts = _accounts(request)
    return (await _team_or_404(accounts, name)).to_public(accounts.credits.config.currency)


@router.post("/teams/{name}/topup")
async def top_up(name: str, request: Request) -> dict[str, Any]:
    """Add `amount` to the balance (kind `refund` or `adjustment`: may be negative)."""
    fields: TopUp = await _body(request, TopUp)
    accounts = _accounts(request)
    team = await _team_or_404(accounts, name)
    amount = money(fields.amount, "amount", signed=fields.kind == "adjustment") or 0
    updated = await accounts.credits.ledger.move(team.id, fields.kind, amount, fields.note)
    return updated.to_public(accounts.credits.config.currency)


@router.get("/teams/{name}/ledger")
async def team_ledger(name: str, request: Request, limit: int = 100) -> dict[str, Any]:
    accounts = _accounts(request)
    team = await _team_or_404(accounts, name)
    rows = await accounts.credits.ledger.entries(team.id, min(max(limit, 1), 10_000))
    data = [
        {
            **row,
            "amount": format_money(row["amount"]),
            "created_at": as_utc(row["created_at"]).isoformat(),
        }
        for row in rows
    ]
    return {"object": "list", "data": data}


@router.post("/codes", status_code=201)
async def create_codes(request: Request) -> dict[str, Any]:
    """`count` redemption codes worth `value` each, shown only in this answer."""
    fields: CodesCreate = await _body(request, CodesCreate)
    value = money(fields.value, "value") or 0
    codes = await _accounts(request).credits.ledger.create_codes(value, fields.count)
    return {"object": "list", "value": format_money(value), "data": codes}


@router.get("/ledger/verify")
async def verify_ledger(request: Request) -> dict[str, Any]:
    """Every stored balance and hold recomputed from the rows; `ok` when all agree."""
    differences = await _accounts(request).credits.ledger.verify()
    return {"ok": not differences, "differences": [vars(item) for item in differences]}


@router.get("/usage")
async def usage(
    request: Request,
    key: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    group_by: Literal["day", "key", "model", "team"] | None = None,
    team: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Totals of recorded requests (requests, inputs, tokens, errors, cost);
    `format=csv` answers the same rows as CSV."""
    accounts = _accounts(request)
    key_id = None if key is None else (await _key_or_404(accounts, key)).id
    team_id = None if team is None else (await _team_or_404(accounts, team)).id
    await accounts.recorder.flush()
    rows = await accounts.store.usage(
        key_id=key_id,
        model=model,
        since=_parse_time(since, "since"),
        until=_parse_time(until, "until"),
        group_by=group_by,
        team_id=team_id,
    )
    rows = [{**row, "cost": format_money(row["cost"])} for row in rows]
    if format == "csv":
        return Response(usage_csv(rows), media_type="text/csv")
    return {
        "object": "usage",
        "group_by": group_by,
        "generated_at": utcnow().isoformat(),
        "data": rows,
    }
