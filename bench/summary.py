"""Print a run's results side by side and the final ratio line.

    python bench/summary.py bench/results/RUN.jsonl

ratio_vs_limit: ezlink's texts/s on 16-input requests of short texts over
the raw limit (the same backend in-process at its best batch size, same
texts), measured again right before and right after ezlink's run, their
mean (the CPU on offer drifts on a shared machine); ratio_vs_peer: the same ezlink figure over
infinity-emb's.
"""

from __future__ import annotations

import json
import sys
from typing import Any

HEADLINE = "short16"


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.startswith("{")]


def find(
    rows: list[dict[str, Any]], target: str, scenario: str | None = None
) -> dict[str, Any] | None:
    for row in rows:
        if row.get("target") == target and (scenario is None or row.get("scenario") == scenario):
            return row
    return None


def main() -> None:
    rows = load(sys.argv[1])
    print(
        f"{'target':<22}{'scenario':<10}{'texts/s':>10}{'tokens/s':>11}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'load1':>7}  statuses"
    )
    for row in rows:
        if "texts_per_s" not in row:
            continue
        scenario = row.get("scenario") or f"bs={row.get('batch_size')}"
        if row.get("target") == "runtime choice":
            scenario = f"{row['runtime']}, bs={row['batch_size']}"
        print(
            f"{row['target']:<22}{scenario:<10}{row['texts_per_s']:>10}{row['tokens_per_s']:>11}"
            f"{row.get('p50_ms', ''):>10}{row.get('p99_ms', ''):>10}{row.get('load1', ''):>7}"
            f"  {row.get('statuses', '')}"
            + (
                f" batches={row['batches']:.0f} real/padded tokens={row['real_token_share']}"
                if "batches" in row
                else ""
            )
        )
    overhead = find(rows, "single request overhead")
    if overhead:
        print(
            f"single short request, {overhead['requests']} paired with the raw encode of the same "
            f"text: ezlink p50 {overhead['server_p50_ms']} ms vs raw encode p50 "
            f"{overhead['raw_p50_ms']} ms: overhead {overhead['overhead_p50_ms']} ms "
            f"(median pair difference {overhead['paired_difference_p50_ms']} ms)"
        )
    mixed_limit = find(rows, "raw limit mixed (best)")
    for target in ("ezlink", "infinity-emb"):
        mixed = find(rows, target, "mixed16")
        if mixed and mixed_limit:
            print(
                f"{target} mixed16 over the mixed corpus's raw limit "
                f"(bs={mixed_limit['batch_size']}): "
                f"{mixed['texts_per_s'] / mixed_limit['texts_per_s']:.2f}"
            )
    for row in rows:
        if row.get("target") == "ezlink burst":
            print(
                f"burst {row['round']}: {row['requests']} requests at once: {row['served_200']} served "
                f"(p50 {row['p50_200_ms']} ms, p99 {row['p99_200_ms']} ms), {row['refused_503']} got 503 "
                f"(p50 {row['p50_503_ms']} ms), {row['other']} other; RSS {row['rss_before_mib']} -> "
                f"peak {row['rss_peak_mib']} -> {row['rss_after_mib']} MiB"
            )
    for row in rows:
        if row.get("target") == "ezlink burst floor":
            print(
                f"burst floor: {row['requests']} requests at once for an unknown model (404, no "
                f"model work): p50 {row['p50_404_ms']} ms, p99 {row['p99_404_ms']} ms"
            )
    for row in rows:
        if row.get("target") == "note":
            print(f"note: {row['text']}")
    best = find(rows, "raw limit (best)")
    around = [
        row for row in (find(rows, "raw limit (before)"), find(rows, "raw limit (after)")) if row
    ]
    limit = (
        sum(row["texts_per_s"] for row in around) / len(around)
        if around
        else (best["texts_per_s"] if best else None)
    )
    ours = find(rows, "ezlink", HEADLINE)
    peer = find(rows, "infinity-emb", HEADLINE)
    if ours and best:
        share = ours["texts_per_s"] / best["texts_per_s"]
        print(f"ezlink {HEADLINE} over the raw limit at the start of the run: {share:.2f}")
    if ours and around:
        print(
            f"ezlink {HEADLINE} {ours['texts_per_s']} texts/s; the raw limit right before and "
            f"after it: {' and '.join(str(row['texts_per_s']) for row in around)}"
        )
    ratio_limit = ours["texts_per_s"] / limit if ours and limit else float("nan")
    ratio_peer = (
        ours["texts_per_s"] / peer["texts_per_s"]
        if ours and peer and peer["texts_per_s"]
        else float("nan")
    )
    print(f"ratio_vs_limit={ratio_limit:.2f} ratio_vs_peer={ratio_peer:.2f}")


if __name__ == "__main__":
    main()
