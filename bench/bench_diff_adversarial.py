"""Adversarial diff benchmark: what one hostile pair of JSON answers costs the worker.

What is measured, for each pair below (~0.7 MB a side unless said):
- `in process`: the CPU time of compare_responses on the pair, both orjson parses included (the
  best of --runs; CPU time, so other load on the machine does not inflate it), and its `kind`
  (`json`, or `over_budget` once the walk stops at the rules' max_nodes);
- `loop stall`: the worst lateness of a ticker scheduled every 1 ms with loop.call_later, while
  the worker's shadow side (a ShadowRunner) compares the pair: from the moment both answers are
  in (`compare_soon`, as when the client's answer completes) until its outcome is counted;
  `busy`: the most CPU time the loop's thread spent between two ticks (time.thread_time), the
  part of the stall this process caused, whatever else the machine runs; `done after`: that
  span; `outcome`: compared, or the drop reason counted. A pair past the route's
  `shadow.diff_off_loop_bytes` goes to the worker's helper process, so `done after` includes
  the helper's start on the first pair;
- `thread stall`: the ticker's worst lateness while a thread (run_in_executor) compares the
  pair, which is what moving the diff to a thread would give: the compiled build keeps the GIL
  for the whole comparison, pure Python lets go of it every switch interval.

The pairs are shaped against the walk (json_walk.py), with default rules unless said:
- flat: one array of ~350,000 small numbers; only the last differs;
- chain: 63 nested objects of ~1,400 members each; at every level the member leading deeper is
  the last one, so the strict-equality check (in C) rescans everything below, level by level;
- depth: the flat array below the depth limit (64 levels): compared whole by deep_equal;
- probes: `unordered: {"$": null}`, 16 vs 16 deep elements that differ only at their ends, so
  the multiset pairs them by 256 probes, each walking down an element;
- chain 64 KiB, probes 64 KiB: those pairs at 30-32 KiB a side, which stay on the loop (the
  default `diff_off_loop_bytes` is 64 KiB): what is left of a hostile pair's stall there.

The build in use is printed first (`hot path compiled with mypyc`, or pure Python): measure the
compiled one (`make native`), which is what runs.

Run: `python bench/bench_diff_adversarial.py [--runs 3] [--only chain]`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import time
from collections.abc import Callable
from typing import Any

import orjson
import uvloop

from strangler import native
from strangler.config import ShadowConfig
from strangler.diff import DiffRules, ResponseSample, compare_responses
from strangler.observe.counters import Counters
from strangler.runtime.snapshot import ShadowRoute
from strangler.shadow.mirror import Mirror, ShadowRunner
from strangler.shadow.redact import Redactor

SIDE_BYTES = 700_000
TICK_S = 0.001
_HEADERS = (("Content-Type", "application/json"),)
Json = Any


def flat(side_bytes: int) -> tuple[Json, Json]:
    count = side_bytes // 2
    a, b = [0] * count, [0] * count
    b[-1] = 1
    return a, b


def chain(side_bytes: int, depth: int = 63) -> tuple[Json, Json]:
    """Nested objects; each level's last member leads to the next, the deepest leaf differs."""
    members = max(1, side_bytes // (depth * 9))

    def build(leaf: int) -> Json:
        node: Json = {"x": leaf}
        for _ in range(depth):
            level: dict[str, Json] = {f"k{i}": 0 for i in range(members)}
            level["zz"] = node
            node = level
        return node

    return build(0), build(1)


def below_depth_limit(side_bytes: int) -> tuple[Json, Json]:
    a, b = flat(side_bytes)
    for _ in range(64):
        a, b = [a], [b]
    return a, b


def probes(side_bytes: int) -> tuple[Json, Json]:
    """16 elements a side, each a 60-level chain of lists; every element differs at its end."""
    elements, depth = 16, 60
    filler = max(1, side_bytes // (elements * depth * 2))

    def element(leaf: int) -> Json:
        node: Json = [leaf]
        for _ in range(depth):
            node = [*([0] * filler), node]
        return node

    return [element(i) for i in range(elements)], [element(100 + i) for i in range(elements)]


# name, pair builder, bytes a side, the route's diff rules
PAIRS: list[tuple[str, Callable[[int], tuple[Json, Json]], int, dict[str, Any] | None]] = [
    ("flat", flat, SIDE_BYTES, None),
    ("chain", chain, SIDE_BYTES, None),
    ("depth", below_depth_limit, SIDE_BYTES, None),
    ("probes", probes, SIDE_BYTES, {"unordered": {"$": None}}),
    ("chain 64 KiB", chain, 32 << 10, None),
    ("probes 64 KiB", probes, 30 << 10, {"unordered": {"$": None}}),
]


def in_process(primary: ResponseSample, shadow: ResponseSample, rules: DiffRules, runs: int) -> str:
    best = float("inf")
    kind = ""
    for _ in range(runs):
        started = time.thread_time()
        comparison = compare_responses(primary, shadow, rules, max_decoded_bytes=4 << 20)
        best = min(best, time.thread_time() - started)
        kind = str(comparison.kind)
    return f"{best * 1e3:8.1f} ms  {kind:<12}"


async def idle_stall(seconds: float) -> float:
    """The worst ticker lateness with nothing to do: this machine's noise floor."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    end = loop.time() + seconds

    def tick(due: float) -> None:
        nonlocal worst
        now = loop.time()
        worst = max(worst, now - due)
        if now < end:
            loop.call_later(TICK_S, tick, now + TICK_S)

    loop.call_later(TICK_S, tick, loop.time() + TICK_S)
    await asyncio.sleep(seconds + 0.01)
    return worst


async def in_a_thread(primary: ResponseSample, shadow: ResponseSample, rules: DiffRules) -> str:
    loop = asyncio.get_running_loop()
    worst = 0.0
    is_done = False

    def tick(due: float) -> None:
        nonlocal worst
        now = loop.time()
        worst = max(worst, now - due)
        if not is_done:
            loop.call_later(TICK_S, tick, now + TICK_S)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        await loop.run_in_executor(pool, time.sleep, 0)  # the thread exists before timing
        loop.call_later(TICK_S, tick, loop.time() + TICK_S)
        await asyncio.sleep(0.01)
        worst = 0.0
        await loop.run_in_executor(pool, compare_responses, primary, shadow, rules)
        is_done = True
    return f"{worst * 1e3:8.1f} ms"


async def through_runner(
    runner: ShadowRunner, setup: ShadowRoute, primary: ResponseSample, shadow: ResponseSample
) -> str:
    """The worst ticker lateness while the runner compares the pair, and how long it took."""
    loop = asyncio.get_running_loop()
    stats = runner.results.route("bench")
    before = stats.compared + sum(stats.dropped.values())
    worst = busy = 0.0
    cpu = time.thread_time()
    finished = loop.create_future()

    def tick(due: float) -> None:
        nonlocal worst, busy, cpu
        now, cpu_now = loop.time(), time.thread_time()
        worst = max(worst, now - due)
        busy, cpu = max(busy, cpu_now - cpu), cpu_now
        if stats.compared + sum(stats.dropped.values()) > before:
            finished.set_result(now)
        else:
            loop.call_later(TICK_S, tick, now + TICK_S)

    mirror = Mirror(runner, stats, "new", setup, b"", b"GET", b"/bench", is_request_chunked=False)
    for side, sample in (("primary", primary), ("shadow", shadow)):
        setattr(mirror, f"{side}_status", sample.status)
        setattr(mirror, f"{side}_names", [name.encode() for name, _ in sample.headers])
        setattr(mirror, f"{side}_values", [value.encode() for _, value in sample.headers])
        setattr(mirror, f"{side}_chunks", [sample.body])
    await asyncio.sleep(0.05)
    loop.call_later(TICK_S, tick, loop.time() + TICK_S)
    await asyncio.sleep(0.01)
    started = loop.time()
    runner.in_flight += 1
    runner.compare_soon(mirror)
    done_at = await finished
    outcome = ", ".join(f"{reason} {count}" for reason, count in stats.dropped.items())
    spans = f"{worst * 1e3:8.1f} ms {busy * 1e3:8.1f} ms {(done_at - started) * 1e3:8.1f} ms"
    return f"{spans}  {outcome or 'compared':<14}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="run only the pairs whose name starts with this")
    args = parser.parse_args()
    print(native.describe())
    print(f"loop stall with nothing to do, over 1 s: {await idle_stall(1.0) * 1e3:.1f} ms")
    print(f"{'pair':<14}{'bytes':>10}  {'in process':>11}  {'kind':<12}", end="")
    print(f"{'loop stall':>11} {'busy':>11} {'done after':>11}  {'outcome':<14}thread stall")
    loop = asyncio.get_running_loop()
    runner = ShadowRunner(loop, Counters())
    gc.disable()
    try:
        for name, build, side_bytes, config in PAIRS:
            if args.only and not name.startswith(args.only):
                continue
            a, b = build(side_bytes)
            primary = ResponseSample(200, _HEADERS, orjson.dumps(a))
            shadow = ResponseSample(200, _HEADERS, orjson.dumps(b))
            del a, b
            rules = DiffRules.from_config(config)
            setup = ShadowRoute.build(ShadowConfig(), rules, Redactor(ShadowConfig().redact))
            size = len(primary.body) + len(shadow.body)
            print(f"{name:<14}{size:>10}  {in_process(primary, shadow, rules, args.runs)}", end="")
            # A fresh route each time: its counters say when this pair's outcome is in.
            runner.results.routes.pop("bench", None)
            print(await through_runner(runner, setup, primary, shadow), end="")
            print(f"  {await in_a_thread(primary, shadow, rules)}", flush=True)
    finally:
        gc.enable()
        runner.close()


if __name__ == "__main__":
    # The worker's loop.
    uvloop.run(main())
