"""Usage totals: requests, tokens, errors and cost, per day, key, model or team."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from sqlalchemy import Date, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ezlink.accounts.store.tables import usage_events

COUNTS = ("requests", "inputs", "prompt_tokens", "completion_tokens", "errors", "cost")


def _group_column(group_by: str | None, dialect: str) -> Any:
    columns = usage_events.c
    if group_by == "day":
        return (
            func.date(columns.created_at) if dialect == "sqlite" else cast(columns.created_at, Date)
        )
    return {"key": columns.key_id, "model": columns.model, "team": columns.team_id}.get(
        group_by or ""
    )


async def usage_totals(
    connection: AsyncConnection,
    *,
    key_id: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: str | None = None,
    team_id: str | None = None,
) -> list[dict[str, Any]]:
    """Totals of the recorded requests, optionally grouped; `cost` in micro-units."""
    c = usage_events.c
    columns: list[Any] = [
        func.count().label("requests"),
        func.coalesce(func.sum(c.inputs), 0).label("inputs"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(case((c.status >= 400, 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(c.cost), 0).label("cost"),
    ]
    group = _group_column(group_by, connection.dialect.name)
    query = select(*([group.label(group_by)] if group is not None else []), *columns)
    for column, value in ((c.key_id, key_id), (c.model, model), (c.team_id, team_id)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(c.created_at >= since)
    if until is not None:
        query = query.where(c.created_at < until)
    if group is not None:
        query = query.group_by(group).order_by(group)
    rows = (await connection.execute(query)).mappings().all()
    result = []
    for row in rows:
        item = {name: row[name] for name in row.keys()}  # noqa: SIM118
        if group_by == "day" and item["day"] is not None:
            item["day"] = str(item["day"])
        for name in COUNTS:
            item[name] = int(item[name])
        result.append(item)
    return result


def usage_csv(rows: list[dict[str, Any]]) -> str:
    """Usage rows as CSV, with a header line."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()
