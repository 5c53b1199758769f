"""Router benchmark: what one `RouteTable.decide` costs with 20 routes and with 2,000.

What is measured: the time of single `decide(method, path)` calls, each timed on its own with
`time.perf_counter_ns`, over a fixed mix of realistic requests: hits spread evenly over the whole
table (every route as likely as any other, a quarter of them with a query string, half of them
with a `.json` format) plus 20% misses (unknown resources, unknown actions, a wrong verb, a
`.1.json` that `:id` refuses). Both tables come from rails_routes.generate_rails_routes.

How: sizes alternate round by round (20, 2000, 20, 2000, ...) so drift in the machine hits both;
the garbage collector is off while timing; each round follows an unrecorded warm-up. A naive
router (every route's regex tried in file order) is timed on the same mixes for comparison.
The figures include one perf_counter_ns call, whose own cost is printed as "timer overhead".

Goals (printed PASS/FAIL; the exit code stays 0 because this is a measurement, not a test):
- median at 2,000 routes <= 2.0 x median at 20 routes (cost must not grow with the table);
- median at 2,000 routes < 10 us.

Run: `python bench/bench_routing.py [--rounds 5] [--calls 200000]`.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rails_routes import generate_rails_routes
from strangler.routing import RouteSpec, RouteTable

SIZES = (20, 2_000)
MISS_SHARE = 0.2
MIX_SIZE = 4_000
GOAL_RATIO = 2.0
GOAL_MEDIAN_NS = 10_000

# Plausible values for each kind of param, so paths look like real traffic.
_PARAM_VALUES = ("42", "1337", "98765", "7")
_FILENAMES = ("avatar.png", "reports/2024/q1.pdf", "logo.svg")
_TOKENS = ("eyJfcmFpbHMiOnsiZGF0YSI6NDJ9fQ--a1b2c3", "bWVzc2FnZQ--f00d")

Request = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-call nanoseconds for one table size, across every round."""

    size: int
    median_ns: float
    p99_ns: float
    hit_share: float


def concrete_request(route: RouteSpec, rng: random.Random) -> Request:
    """A request that `route` answers: its first verb and its pattern filled with values."""
    verb, pattern = route.match.split(" ", 1)
    method = "GET" if verb in ("ANY", "*") else sorted(verb.split("|"))[0]
    path = pattern.replace("(.:format)", rng.choice((".json", "")))

    def fill(found: re.Match[str]) -> str:
        if found.group(0).startswith("*"):
            return rng.choice(_FILENAMES)
        if "signed" in found.group(0) or "token" in found.group(0) or "key" in found.group(0):
            return rng.choice(_TOKENS)
        return rng.choice(_PARAM_VALUES)

    path = re.sub(r"[:*]\w+", fill, path)
    if rng.random() < 0.25:
        path += "?page=2&per_page=50"
    return method, path


def miss_request(routes: Sequence[RouteSpec], rng: random.Random) -> Request:
    """A request no route answers, shaped like the table's own paths."""
    method, path = concrete_request(rng.choice(routes), rng)
    path = path.split("?", 1)[0].removesuffix(".json")
    kind = rng.randrange(4)
    if kind == 0:
        return "GET", "/widgetz/" + rng.choice(_PARAM_VALUES)
    if kind == 1:
        return method, path + "/no_such_action"
    if kind == 2:
        return "OPTIONS", path
    return "GET", path.rstrip("/") + "/1.2.json"


def request_mix(routes: Sequence[RouteSpec], seed: int) -> list[Request]:
    rng = random.Random(seed)
    requests = [
        miss_request(routes, rng) if rng.random() < MISS_SHARE else concrete_request(route, rng)
        for route in (rng.choice(routes) for _ in range(MIX_SIZE))
    ]
    rng.shuffle(requests)
    return requests


def time_calls(
    decide: Callable[[str, str], object], requests: Sequence[Request], calls: int
) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    count = len(requests)
    for k in range(calls):
        method, path = requests[k % count]
        started = clock()
        decide(method, path)
        samples.append(clock() - started)
    return samples


def timer_overhead_ns() -> float:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(100_000):
        started = clock()
        samples.append(clock() - started)
    return statistics.median(samples)


def percentile(sorted_samples: Sequence[int], share: float) -> float:
    return float(sorted_samples[min(len(sorted_samples) - 1, int(share * len(sorted_samples)))])


def naive_router(table: RouteTable) -> Callable[[str, str], object]:
    """Every route's whole regex tried in file order: what the trie must beat as tables grow."""
    rows = [(p.verbs, p.regex.fullmatch) for p in table.patterns]

    def decide(method: str, path: str) -> object:
        path = path.split("?", 1)[0]
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        for verbs, fullmatch in rows:
            if (verbs is None or method in verbs) and fullmatch(path) is not None:
                return verbs
        return None

    return decide


def measure(rounds: int, calls: int) -> tuple[list[Timing], dict[int, float]]:
    tables = {size: RouteTable.build(generate_rails_routes(size), "legacy") for size in SIZES}
    mixes = {size: request_mix(table.routes, seed=size) for size, table in tables.items()}
    samples: dict[int, list[int]] = {size: [] for size in SIZES}
    naive: dict[int, list[int]] = {size: [] for size in SIZES}
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            for size in SIZES:
                decide = tables[size].decide
                time_calls(decide, mixes[size], calls // 10)  # warm-up, not recorded
                samples[size] += time_calls(decide, mixes[size], calls)
                naive[size] += time_calls(naive_router(tables[size]), mixes[size], calls // 100)
    finally:
        gc.enable()
    timings = []
    for size in SIZES:
        ordered = sorted(samples[size])
        hits = sum(tables[size].decide(m, p).route is not None for m, p in mixes[size])
        timings.append(
            Timing(size, statistics.median(ordered), percentile(ordered, 0.99), hits / MIX_SIZE)
        )
    return timings, {size: statistics.median(naive[size]) for size in SIZES}


def report(timings: Sequence[Timing], naive: dict[int, float], overhead_ns: float) -> None:
    print(f"python {sys.version.split()[0]}; timer overhead {overhead_ns:.0f} ns per call\n")
    print(f"{'routes':>7} {'median':>10} {'p99':>10} {'hits':>6} {'naive median':>14}")
    for t in timings:
        print(
            f"{t.size:>7,} {t.median_ns / 1000:>8.2f}us {t.p99_ns / 1000:>8.2f}us"
            f" {t.hit_share:>6.0%} {naive[t.size] / 1000:>12.2f}us"
        )
    small, large = timings[0], timings[-1]
    ratio = large.median_ns / small.median_ns
    naive_ratio = naive[large.size] / naive[small.size]
    print(f"\nratio {large.size:,}/{small.size}: median {ratio:.2f}x", end="")
    print(f" (naive regex list: {naive_ratio:.0f}x)")
    print("\ngoals:")
    print_goal(
        ratio <= GOAL_RATIO,
        f"median at {large.size:,} <= {GOAL_RATIO} x median at {small.size}: {ratio:.2f}x",
    )
    print_goal(
        large.median_ns < GOAL_MEDIAN_NS,
        f"median at {large.size:,} < {GOAL_MEDIAN_NS // 1000} us: {large.median_ns / 1000:.2f} us",
    )


def print_goal(is_met: bool, text: str) -> None:
    print(f"  {'PASS' if is_met else 'FAIL'}  {text}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per size")
    parser.add_argument("--calls", type=int, default=200_000, help="timed calls per round")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 100:
        parser.error("--rounds must be >= 1 and --calls >= 100")
    overhead = timer_overhead_ns()
    timings, naive = measure(args.rounds, args.calls)
    report(timings, naive, overhead)
    return 0


if __name__ == "__main__":
    sys.exit(main())
