"""Data diff benchmark: `strangler data diff` against reladiff on the same 1,000,000-row tables,
in the same run.

What is measured: the wall time of one table's diff, from opening the connections to the
result, legacy in MariaDB and new in PostgreSQL, both on this machine (data_lab.py builds the
tables once and keeps them): 9 columns of Rails-like mixed types (BIGINT key, INT, VARCHAR,
nullable TEXT, TINYINT enum, DECIMAL(12,2), TINYINT(1) vs boolean, two DATETIME(6) vs
timestamp(6)), in three cases:

- (a) identical: `projects` vs `projects_same`
- (b) 100 rows differ (80 changed in one column each, 10 missing in new, 10 only in new)
- (c) 10 % of the rows differ (every tenth row's budget)

strangler runs in-process through `run_diff` (what `strangler data diff` calls) with the CLI's
defaults: `--max-differences 1000`, 4 steps in flight. reladiff (PyPI, the maintained fork of
datafold's data-diff) runs its hashdiff with the same key and the same 8 columns, 4 threads per
database and its default bisection; it reads TINYINT(1) as an integer and PostgreSQL's boolean
as 0/1, so this table is within what it can express. It has no cap, so in case (c) it reports
every difference. Each case checks both tools' answers against the changes data_lab.py made:
a fast wrong answer is not a result.

Goals (printed PASS/FAIL; the exit code stays 0 because this is a measurement, not a test):
- (a) and (b): strangler >= 1,000,000 rows/s and at least as fast as reladiff;
- (c): strangler within 3x of its own (a), stopped by the cap, every count right.

The load average and the share of the two cores that other processes used during each run are
printed: on a shared machine the figures understate what the databases can do.

Run: `python bench/bench_data.py [--rows 1000000] [--rounds 1] [--skip-reladiff]`.
Needs MariaDB on 127.0.0.1:3306 (root, no password) and PostgreSQL on 127.0.0.1:5432 (user
postgres, trust), or STRANGLER_BENCH_MARIADB / STRANGLER_BENCH_POSTGRES. The first run loads the
tables (~2 minutes); later runs reuse them. Exit codes: 0 measured, 1 something could not run.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_lab import COLUMNS, LEGACY_TABLE, NEW_TABLES, Lab, LabError, prepare
from proxy_lab import cores_busy_s
from strangler.config import load_config
from strangler.data.bisect import DiffKind
from strangler.data.diff import Limits
from strangler.data.run import run_diff, select_tables

GOAL_ROWS_PER_S = 1_000_000
MAX_MANY_VS_SAME = 3.0
MAX_DIFFERENCES = 1000
CONCURRENCY = 4
CASES = {
    "same": "(a) identical",
    "few": "(b) 100 rows differ",
    "many": "(c) 10 % differ",
}


@dataclass(slots=True)
class Run:
    """One contender's diff of one case."""

    contender: str
    case: str
    seconds: float
    rows: int  # legacy rows the contender went through
    counts: dict[str, int]
    is_complete: bool
    # What is wrong with the answer ("" when it is right).
    wrong: str
    other_cpu: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class Results:
    runs: list[Run] = field(default_factory=list)

    def median(self, contender: str, case: str) -> Run | None:
        runs = sorted(
            (r for r in self.runs if r.contender == contender and r.case == case),
            key=lambda r: r.seconds,
        )
        return runs[len(runs) // 2] if runs else None


def _busy() -> tuple[float, float]:
    """(seconds both cores were busy, seconds of them spent by the databases and us)."""
    return cores_busy_s(range(os.cpu_count() or 1)), _ours()


def _ours() -> float:
    """CPU time of this process and of every MariaDB and PostgreSQL server process: the
    contenders' own work (the servers are shared, so other sessions on them count as ours)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name.startswith(("mysqld", "mariadbd", "postgres")):
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])
    return total + ticks / os.sysconf("SC_CLK_TCK")


def timed(run: Callable[[], tuple[int, dict[str, set[Any]], bool]]) -> tuple[float, Any, float]:
    """Seconds `run` took, what it returned, and the share of the cores others used."""
    busy_before, ours_before = _busy()
    started = time.perf_counter()
    answer = run()
    seconds = time.perf_counter() - started
    busy_after, ours_after = _busy()
    cores = os.cpu_count() or 1
    # Approximate: a server process that exits during the run takes its CPU time out of ours.
    others = max(0.0, (busy_after - busy_before) - (ours_after - ours_before))
    return seconds, answer, min(1.0, others / (seconds * cores)) if seconds > 0 else 0.0


def strangler_diff(lab: Lab, case: str, folder: Path) -> tuple[int, dict[str, set[Any]], bool]:
    config = folder / f"{case}.yaml"
    config.write_text(
        f"""\
backends: {{legacy: {{url: "http://127.0.0.1:1"}}}}
routes: [{{name: projects.index, match: "GET /projects"}}]
data:
  legacy: {{url: "{lab.mysql_url}"}}
  new: {{url: "{lab.postgres_url}"}}
  min_age_s: 0
  tables:
    - {{name: {LEGACY_TABLE}, new: {NEW_TABLES[case]}, key: id}}
""",
        encoding="utf-8",
    )
    data = load_config(config).data
    assert data is not None
    limits = Limits(max_differences=MAX_DIFFERENCES, concurrency=CONCURRENCY)
    outcome = run_diff(data, config, select_tables(data, []), limits)
    if outcome.errors:
        raise LabError(f"strangler could not diff {case}: {outcome.errors}")
    (result,) = outcome.results
    found: dict[str, set[Any]] = {kind.value: set() for kind in DiffKind}
    for difference in result.differences:
        found[difference.kind.value].add(difference.key[0])
    # The rows it counted: all of them, unless a cap stopped it first.
    return result.rows_legacy, found, result.complete


def reladiff_diff(lab: Lab, case: str) -> tuple[int, dict[str, set[Any]], bool]:
    from reladiff import connect_to_table, diff_tables

    columns = tuple(name for name in COLUMNS if name != "id")
    legacy = connect_to_table(
        lab.mysql_url, LEGACY_TABLE, "id", thread_count=CONCURRENCY, extra_columns=columns
    )
    new = connect_to_table(
        lab.postgres_url, NEW_TABLES[case], "id", thread_count=CONCURRENCY, extra_columns=columns
    )
    try:
        signs: dict[int, set[str]] = {}
        for sign, row in diff_tables(
            legacy,
            new,
            threaded=True,
            max_threadpool_size=CONCURRENCY,
            # Its sort of the differences fails on a NULL column (str < None); the order is moot.
            skip_sort_results=True,
        ):
            signs.setdefault(int(row[0]), set()).add(sign)
    finally:
        legacy.database.close()
        new.database.close()
    found: dict[str, set[Any]] = {kind.value: set() for kind in DiffKind}
    # "-": a row of the first table (legacy) that the second lacks; "+": the other way round.
    kinds = {frozenset("-"): "missing_in_new", frozenset("+"): "missing_in_legacy"}
    for key, seen in signs.items():
        found[kinds.get(frozenset(seen), "different")].add(key)
    return lab.rows, found, True


def check(lab: Lab, case: str, found: dict[str, set[Any]], is_complete: bool, capped: bool) -> str:
    """What is wrong with an answer, "" when nothing is."""
    if case == "same":
        expected = {kind.value: set() for kind in DiffKind}
    elif case == "few":
        expected = lab.expected_few()
    else:
        expected = {"missing_in_new": set(), "missing_in_legacy": set()}
        many = lab.expected_many()
        wrong = found["different"] - many
        if wrong:
            return f"{len(wrong)} rows reported different that are not"
        if found["missing_in_new"] or found["missing_in_legacy"]:
            return "rows reported missing that are not"
        if capped:
            if is_complete or len(found["different"]) != MAX_DIFFERENCES:
                return (
                    f"expected complete:false with {MAX_DIFFERENCES} differences, got "
                    f"complete:{str(is_complete).lower()} with {len(found['different'])}"
                )
            return ""
        return "" if found["different"] == many else "not every changed row was found"
    for kind, keys in expected.items():
        if found[kind] != keys:
            return f"{kind}: {len(found[kind])} found, {len(keys)} expected"
    return "" if is_complete else "complete:false on a run that should finish"


def describe(run: Run) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in run.counts.items() if n) or "equal"
    partial = "" if run.is_complete else " (partial: the cap)"
    return f"{counts}{partial}" + (f"  !!! WRONG: {run.wrong}" if run.wrong else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-reladiff", action="store_true")
    args = parser.parse_args()
    try:
        lab = prepare(args.rows)
    except LabError as exc:
        print(f"bench_data: could not prepare the tables: {exc}", file=sys.stderr)
        return 1
    has_reladiff = not args.skip_reladiff
    if has_reladiff:
        try:
            import reladiff

            print(f"reladiff {reladiff.__version__}")
        except ImportError:
            print("reladiff is not installed (pip install -e '.[bench]'): strangler alone")
            has_reladiff = False
    print(
        f"{args.rows:,} rows x {len(COLUMNS)} columns, MariaDB (legacy) vs PostgreSQL (new); "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"
    )
    results = Results()
    with tempfile.TemporaryDirectory(prefix="strangler-bench-data-") as folder:
        for round_index in range(args.rounds):
            for case, title in CASES.items():
                # Alternate who goes first, so a warm cache or a burst of load favours neither.
                contenders = ["strangler", "reladiff"] if has_reladiff else ["strangler"]
                if round_index % 2:
                    contenders.reverse()
                for contender in contenders:
                    if contender == "strangler":
                        seconds, answer, others = timed(
                            lambda case=case: strangler_diff(lab, case, Path(folder))
                        )
                    else:
                        seconds, answer, others = timed(lambda case=case: reladiff_diff(lab, case))
                    rows, found, is_complete = answer
                    run = Run(
                        contender,
                        case,
                        seconds,
                        rows,
                        {kind: len(keys) for kind, keys in found.items()},
                        is_complete,
                        check(lab, case, found, is_complete, capped=contender == "strangler"),
                        others,
                    )
                    results.runs.append(run)
                    print(
                        f"  {title:<22} {contender:<10} {seconds:7.2f} s "
                        f"{run.rows_per_s:>11,.0f} rows/s   others used {others:4.0%} of the "
                        f"cores   {describe(run)}",
                        flush=True,
                    )
    report(results, has_reladiff, args.rounds)
    return 0


def report(results: Results, has_reladiff: bool, rounds: int) -> None:
    print(f"\nmedian of {rounds} round(s)")
    print(f"  {'case':<22} {'strangler rows/s':>17} {'reladiff rows/s':>16} {'ratio':>7}")
    for case, title in CASES.items():
        ours = results.median("strangler", case)
        theirs = results.median("reladiff", case) if has_reladiff else None
        assert ours is not None
        ratio = f"{theirs.seconds / ours.seconds:6.2f}x" if theirs else "      -"
        shown = f"{theirs.rows_per_s:>16,.0f}" if theirs else f"{'not run':>16}"
        print(f"  {title:<22} {ours.rows_per_s:>17,.0f} {shown} {ratio}")
    print("  (ratio: reladiff's seconds / strangler's; above 1 strangler is faster. In (c)")
    print("   strangler stops at the cap, reladiff has none and lists every difference)")
    print("\ngoals")
    same = results.median("strangler", "same")
    many = results.median("strangler", "many")
    assert same is not None and many is not None
    for case in ("same", "few"):
        ours = results.median("strangler", case)
        assert ours is not None
        verdict(
            f"{CASES[case]}: >= {GOAL_ROWS_PER_S:,} rows/s",
            ours.rows_per_s >= GOAL_ROWS_PER_S and not ours.wrong,
            f"{ours.rows_per_s:,.0f} rows/s" + (f", WRONG: {ours.wrong}" if ours.wrong else ""),
        )
        theirs = results.median("reladiff", case) if has_reladiff else None
        if theirs is None:
            print(f"  SKIP  {CASES[case]}: as fast as reladiff (reladiff not run)")
        else:
            verdict(
                f"{CASES[case]}: as fast as reladiff",
                ours.seconds <= theirs.seconds and not ours.wrong,
                f"{ours.seconds:.2f} s vs {theirs.seconds:.2f} s "
                f"({theirs.seconds / ours.seconds:.2f}x)",
            )
    verdict(
        f"{CASES['many']}: within {MAX_MANY_VS_SAME:g}x of (a), counts right",
        many.seconds <= MAX_MANY_VS_SAME * same.seconds and not many.wrong,
        f"{many.seconds:.2f} s = {many.seconds / same.seconds:.2f}x (a); {describe(many)}",
    )
    busy = max(run.other_cpu for run in results.runs)
    if busy > 0.05:
        print(
            f"\n!!! other processes took up to {busy:.0%} of the cores during a run: the figures "
            "understate what the databases can do. Rerun on an idle machine."
        )


def verdict(name: str, is_met: bool, detail: str) -> None:
    print(f"  {'PASS' if is_met else 'FAIL':<4}  {name:<52} {detail}")


if __name__ == "__main__":
    sys.exit(main())
