"""Diff benchmark: response pairs compared per second on one core, JSON parsing included.

What is measured: `compare_responses` on pairs of realistic ~2 KB JSON answers (an API index
page: a `meta` object, nested `owner` and `stats` objects, and an array of 20 projects with
ids, names, ISO timestamps, prices and flags), each timed from the raw bytes, so both
orjson parses are inside the figure. The shadow side of each pair carries the usual migration
noise that the rules must absorb (another request id, fresh timestamps, the projects in a
different order, prices off by < 0.01, a different `generated_at`) and, in half of the pairs,
one or two real differences (a renamed project, a changed count, a missing field).

Rules, as a route would configure them: an ignore with recursive descent (`$..updated_at`),
a plain ignore, an unordered array matched by `id`, a tolerance, a timestamp normalizer.

How: a fixed set of pairs (seeded), looped over for each round; the garbage collector is off
while timing; each round follows an unrecorded warm-up. The median round is reported.

Goal (printed PASS/FAIL; the exit code stays 0 because this is a measurement, not a test):
at least 10,000 pairs/s on one core.

Run: `python bench/bench_diff.py [--rounds 5] [--pairs 2000]`.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
import uuid
from typing import Any

import orjson

from strangler.diff import DiffRules, ResponseSample, compare_responses

GOAL_PAIRS_PER_S = 10_000
RULES = {
    "ignore": ["$..updated_at", "$.meta.request_id"],
    "unordered": {"$.projects": "id"},
    "tolerance": {"$..price": 0.01},
    "normalize": [{"pattern": r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z?", "replace": "<time>"}],
}
_HEADERS = (
    ("Content-Type", "application/json; charset=utf-8"),
    ("Cache-Control", "max-age=0, private, must-revalidate"),
    ("Set-Cookie", "_app_session=abc123; path=/; HttpOnly"),
)
_SHADOW_HEADERS = (
    ("content-type", "application/json;charset=utf-8"),
    ("cache-control", "private, max-age=0, must-revalidate"),
    ("set-cookie", "_app_session=zzz999; path=/; HttpOnly"),
)
_WORDS = ("alpha", "beta", "gamma", "delta", "orion", "atlas", "kepler", "vega", "lyra")


def timestamp(rng: random.Random) -> str:
    return (
        f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.000Z"
    )


def document(rng: random.Random) -> dict[str, Any]:
    """One legacy answer: ~2 KB of JSON."""
    projects = [
        {
            "id": 1000 + i,
            "name": f"{rng.choice(_WORDS)} {rng.choice(_WORDS)}",
            "updated_at": timestamp(rng),
            "price": round(rng.uniform(1, 500), 2),
            "archived": rng.random() < 0.2,
        }
        for i in range(20)
    ]
    return {
        "meta": {
            "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "generated_at": timestamp(rng),
            "version": "v1",
        },
        "owner": {"id": rng.randint(1, 9999), "login": rng.choice(_WORDS), "plan": "pro"},
        "stats": {"count": 20, "avg_price": round(rng.uniform(1, 500), 3), "pages": 3},
        "projects": projects,
    }


def shadow_of(legacy: dict[str, Any], rng: random.Random, has_real_difference: bool) -> Any:
    """The new backend's answer: the same data with migration noise, maybe a real difference."""
    shadow = orjson.loads(orjson.dumps(legacy))
    shadow["meta"]["request_id"] = str(uuid.UUID(int=rng.getrandbits(128)))
    shadow["meta"]["generated_at"] = timestamp(rng)
    rng.shuffle(shadow["projects"])
    for project in shadow["projects"]:
        if rng.random() < 0.5:
            project["updated_at"] = timestamp(rng)
        if rng.random() < 0.3:
            project["price"] = round(project["price"] + 0.004, 3)
    if has_real_difference:
        shadow["projects"][rng.randrange(20)]["name"] = "renamed"
        if rng.random() < 0.5:
            shadow["stats"]["count"] = 19
        else:
            del shadow["owner"]["plan"]
    return shadow


def make_pairs(count: int, seed: int) -> list[tuple[ResponseSample, ResponseSample]]:
    rng = random.Random(seed)
    pairs = []
    for i in range(count):
        legacy = document(rng)
        shadow = shadow_of(legacy, rng, has_real_difference=i % 2 == 0)
        pairs.append(
            (
                ResponseSample(200, _HEADERS, orjson.dumps(legacy)),
                ResponseSample(200, _SHADOW_HEADERS, orjson.dumps(shadow)),
            )
        )
    return pairs


def one_round(pairs: list[tuple[ResponseSample, ResponseSample]], rules: DiffRules) -> float:
    """Pairs per second over one pass through `pairs`."""
    started = time.perf_counter()
    for primary, shadow in pairs:
        compare_responses(primary, shadow, rules)
    return len(pairs) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2_000)
    args = parser.parse_args()

    rules = DiffRules.from_config(RULES)
    pairs = make_pairs(args.pairs, seed=7)
    sizes = [len(primary.body) for primary, _ in pairs]
    results = [compare_responses(primary, shadow, rules) for primary, shadow in pairs]
    unequal = sum(not result.is_equal for result in results)
    print(f"documents: median {statistics.median(sizes):.0f} bytes; {len(pairs)} pairs")
    print(f"pairs with real differences found: {unequal} (expected {(len(pairs) + 1) // 2})")

    rates = []
    gc.disable()
    try:
        for _ in range(args.rounds):
            one_round(pairs[: max(1, len(pairs) // 10)], rules)  # warm-up, not recorded
            rates.append(one_round(pairs, rules))
    finally:
        gc.enable()
    median = statistics.median(rates)
    print(f"pairs/s per round: {', '.join(f'{rate:,.0f}' for rate in rates)}")
    print(f"median: {median:,.0f} pairs/s ({1e6 / median:.1f} us per pair)")
    verdict = "PASS" if median >= GOAL_PAIRS_PER_S else "FAIL"
    print(f"{verdict}: goal >= {GOAL_PAIRS_PER_S:,} pairs/s on one core")


if __name__ == "__main__":
    main()
