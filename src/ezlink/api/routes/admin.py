"""The admin API: /admin/keys and /admin/usage, for the master key only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ezlink.accounts.keys import ApiKey, as_utc, utcnow
from ezlink.accounts.service import Accounts
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


class KeyCreate(KeyFields):
    name: str = Field(min_length=1, max_length=200)


class KeyUpdate(KeyFields):
    name: str | None = Field(None, min_length=1, max_length=200)
    disabled: bool | None = None


def _accounts(request: Request) -> Accounts:
    return app_state(request).accounts


async def _body(request: Request, schema: type[KeyFields]) -> KeyFields:
    try:
        data = orjson.loads(await request.body())
        return schema.model_validate(data)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("The body is not valid JSON.") from None
    except ValidationError as exc:
        raise from_validation_error(exc) from None


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
    key, secret = await _accounts(request).store.create_key(
        fields.name,
        owner=fields.owner,
        allowed_models=fields.allowed_models or (),
        rpm=fields.rpm,
        tpm=fields.tpm,
        quota_tokens=fields.quota_tokens,
        expires_at=None if fields.expires_at is None else as_utc(fields.expires_at),
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


@router.get("/usage")
async def usage(
    request: Request,
    key: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    group_by: Literal["day", "key", "model"] | None = None,
) -> dict[str, Any]:
    """Totals of recorded requests (requests, inputs, prompt_tokens, errors)."""
    accounts = _accounts(request)
    key_id = None if key is None else (await _key_or_404(accounts, key)).id
    await accounts.recorder.flush()
    rows = await accounts.store.usage(
        key_id=key_id,
        model=model,
        since=_parse_time(since, "since"),
        until=_parse_time(until, "until"),
        group_by=group_by,
    )
    return {
        "object": "usage",
        "group_by": group_by,
        "generated_at": utcnow().isoformat(),
        "data": rows,
    }
