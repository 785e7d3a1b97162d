"""What billing adds per request: admission + settlement, unbilled vs billed.

In process (no HTTP, no model), on the accounts path every route walks:
`Accounts.admit` then `Accounts.settle`, for

* `unbilled`: a key with no team and no quota (today's path: no database
  work per request; the usage row goes to the journal and the batch flush);
* `unbilled-no-journal`: the same without the crash-safe usage journal;
* `billed`: a key of a team, at a per-token price: one hold transaction at
  admission, one settlement transaction (usage row, charge, ledger row).

Requests arrive open-loop at `--rate` per second (200 by default), each
timed from admission to the end of its settlement; p50 and p99 in ms. On
SQLite (a temp file) and, when the OS has PostgreSQL, on a throw-away
PostgreSQL server (tests/support/postgres.py).

    .venv/bin/python bench/billing_overhead.py [--requests 2000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.postgres import PostgresServer

from ezlink.accounts.billing import Bound
from ezlink.accounts.money import parse_money
from ezlink.accounts.service import Accounts, TokenCounts
from ezlink.config import AccountsConfig, BillingConfig, PriceConfig

PRICE = PriceConfig(input_per_1m="0.15", output_per_1m="0.60")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(url: str, requests: int, rate: float) -> dict[str, list[float]]:
    accounts = Accounts.from_config(AccountsConfig(database_url=url))
    await accounts.start()
    accounts.credits.configure(BillingConfig(), [])
    try:
        team = await accounts.credits.ledger.create_team("bench", balance=parse_money("1000000"))
        plain, _ = await accounts.store.create_key("plain")
        billed, _ = await accounts.store.create_key("billed", team_id=team.id)
        cases = {"unbilled": plain, "billed": billed}
        ms: dict[str, list[float]] = {name: [] for name in [*cases, "unbilled-no-journal"]}

        async def one(name: str) -> None:
            key = cases.get(name, plain)
            started = time.perf_counter()
            meter = await accounts.admit(
                key_id=key.id,
                limits=key.limits,
                model="m",
                inputs=1,
                price=PRICE,
                bound=Bound(prompt_tokens=64, output_tokens=256),
            )
            await accounts.settle(meter, tokens=TokenCounts(prompt=20, completion=100))
            ms[name].append((time.perf_counter() - started) * 1000)

        journal = accounts.recorder.journal
        for name in ms:
            accounts.recorder.journal = None if name == "unbilled-no-journal" else journal
            tasks = []
            start = time.perf_counter()
            for i in range(requests):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(name)))
            await asyncio.gather(*tasks)
            await accounts.recorder.flush()
        accounts.recorder.journal = journal
        assert await accounts.credits.ledger.verify() == []
        return ms
    finally:
        await accounts.stop()


def report(label: str, ms: dict[str, list[float]]) -> None:
    print(f"\n{label}")
    print(f"{'path':22} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values in ms.items():
        print(
            f"{name:22} {percentile(values, 0.5):8.3f} {percentile(values, 0.99):8.3f} "
            f"{statistics.fmean(values):8.3f}"
        )
    base = percentile(ms["unbilled"], 0.5)
    print(f"billing adds {percentile(ms['billed'], 0.5) - base:.3f} ms p50 over unbilled")
    journal = percentile(ms["unbilled"], 0.5) - percentile(ms["unbilled-no-journal"], 0.5)
    print(f"the usage journal adds {journal:.3f} ms p50")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="ezlink-bench-billing-")
    sqlite = f"sqlite:///{directory}/ezlink.db"
    report(
        f"SQLite, {args.rate:.0f} requests/s",
        asyncio.run(measure(sqlite, args.requests, args.rate)),
    )
    try:
        postgres = PostgresServer().start()
    except RuntimeError as exc:
        print(f"\nPostgreSQL: not measured ({exc})")
        return
    try:
        ms = asyncio.run(measure(postgres.create_database(), args.requests, args.rate))
        report(f"PostgreSQL, {args.rate:.0f} requests/s", ms)
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
