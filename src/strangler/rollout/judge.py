"""judge_interval: one analysis interval's verdict on the canary, from both sides' figures.

Pure. No I/O, no clock reads: the analyzer gathers one interval's SideWindows (merged across
workers) and stores the IntervalVerdict this returns.

Rules:
- Too little traffic says nothing: with fewer than `min_requests` on either side the verdict is
  INCONCLUSIVE, with one exception. A broken new backend must be rolled back even at low
  traffic, so new's error-rate ceiling is still judged once new has min(10, min_requests)
  requests, and fails when the rate is over the ceiling with at least 3 errors; the verdict is
  then FAIL and the "requests" check is reported inconclusive.
- With enough traffic every check runs: any FAIL makes the verdict FAIL. Otherwise a check that
  could not run (a side without latencies) makes it INCONCLUSIVE, except "parity", which is
  reported but never holds a verdict back (shadow traffic can be sampled much thinner).
  Otherwise PASS.
- New is judged against legacy in the same interval, never against a fixed number, except the
  absolute error-rate ceiling. Latency checks fail only when new is also slower by more than
  `latency_slack_s`: on loopback 1 ms against 1.6 ms is a 60 % ratio and no regression.
- Errors are among the requests: 0 <= errors <= requests on each side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from strangler.diff import wilson_interval
from strangler.rollout.histogram import LatencyHistogram
from strangler.rollout.mann_whitney import mann_whitney_u

# Below this many comparisons the parity check reports itself inconclusive.
MIN_PARITY_COMPARED = 100
# The low-traffic rule: new's errors are judged from this many requests on (or min_requests, if
# lower), and only with at least this many errors, so two unlucky requests roll nothing back.
LOW_TRAFFIC_MIN_REQUESTS = 10
LOW_TRAFFIC_MIN_ERRORS = 3

_T = TypeVar("_T")

CHECK_NAMES = ("requests", "error_rate", "error_ratio", "p50", "p99", "mann_whitney", "parity")


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True, slots=True)
class SideWindow:
    """One side's figures for one interval, merged across workers."""

    requests: int
    errors: int  # 5xx answers and connection failures, counted among `requests`
    latency: LatencyHistogram

    def __post_init__(self) -> None:
        if not 0 <= self.errors <= self.requests:
            raise ValueError(f"need 0 <= errors <= requests, got {self.errors}/{self.requests}")


@dataclass(frozen=True, slots=True)
class Checks:
    """Thresholds; the defaults are what a user gets without configuring any."""

    min_requests: int = 50  # per side; fewer -> inconclusive
    max_error_rate: float = 0.05  # absolute ceiling on new's error rate
    max_error_ratio: float = 2.0  # new error rate <= k x legacy's ...
    # ... where legacy's rate counts as at least this: legacy at 0 errors must not make 1 error
    # a failure.
    error_rate_floor: float = 0.01
    max_p50_ratio: float = 1.5
    max_p99_ratio: float = 2.0
    # Latency checks fail only when new also exceeds legacy by more than this: loopback answers
    # in 1 ms, and 2 ms is not a regression worth a rollback.
    latency_slack_s: float = 0.005
    mw_alpha: float = 0.01  # Mann-Whitney significance
    mw_min_effect: float = 0.6  # and effect size (P(new > legacy)) at least this
    # When the route is also shadowed: the Wilson lower bound of parity at least this.
    min_parity: float | None = 0.99

    def __post_init__(self) -> None:
        fractions = {
            "max_error_rate": self.max_error_rate,
            "error_rate_floor": self.error_rate_floor,
            "mw_min_effect": self.mw_min_effect,
        }
        if self.min_parity is not None:
            fractions["min_parity"] = self.min_parity
        for name, value in fractions.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name, value in {
            "max_error_ratio": self.max_error_ratio,
            "max_p50_ratio": self.max_p50_ratio,
            "max_p99_ratio": self.max_p99_ratio,
        }.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, got {self.min_requests}")
        if not (math.isfinite(self.latency_slack_s) and self.latency_slack_s >= 0):
            raise ValueError(f"latency_slack_s must be >= 0, got {self.latency_slack_s}")
        if not 0.0 < self.mw_alpha < 1.0:
            raise ValueError(f"mw_alpha must be in (0, 1), got {self.mw_alpha}")


@dataclass(frozen=True, slots=True)
class Parity:
    """Shadow comparisons of the interval's route(s), when they are shadowed."""

    compared: int
    equal: int

    def __post_init__(self) -> None:
        if not 0 <= self.equal <= self.compared:
            raise ValueError(f"need 0 <= equal <= compared, got {self.equal}/{self.compared}")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome; `observed` and `limit` are in the check's unit (see `compact`):
    a fraction for the rates and parity, seconds for p50/p99, the p-value for mann_whitney and
    the smaller side's count for requests."""

    name: str  # one of CHECK_NAMES
    outcome: Outcome
    observed: float | None
    limit: float | None
    detail: str  # one human sentence with the numbers

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "observed": self.observed,
            "limit": self.limit,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CheckResult:
        name = _field(data, "name", str)
        if name not in CHECK_NAMES:
            raise ValueError(f"unknown check {name!r}")
        return cls(
            name=name,
            outcome=_outcome(data),
            observed=_number_or_none(data, "observed"),
            limit=_number_or_none(data, "limit"),
            detail=_field(data, "detail", str),
        )

    @property
    def compact(self) -> str:
        """The check's name, figure and limit in one phrase: `error_rate 12.0 % > 5.0 %`."""
        if self.observed is None or self.limit is None:
            return f"{self.name} {self.outcome.value}"
        # mann_whitney and parity fail below their limit, the others above it.
        fails_below = self.name in ("mann_whitney", "parity")
        failed = self.outcome is Outcome.FAIL
        sign = ("<" if failed else ">=") if fails_below else (">" if failed else "<=")
        unit = _UNITS.get(self.name, _plain)
        return f"{self.name} {unit(self.observed)} {sign} {unit(self.limit)}"


Figures = dict[str, float | int | None]


@dataclass(frozen=True, slots=True)
class IntervalVerdict:
    """One interval's outcome, every check that ran, and both sides' headline figures."""

    outcome: Outcome
    checks: tuple[CheckResult, ...]
    legacy: Figures  # requests, errors, error_rate, p50_s, p99_s
    new: Figures

    def to_json(self) -> dict[str, object]:
        """JSON-able, with stable keys; `summary` is included for readers and ignored on load."""
        return {
            "outcome": self.outcome.value,
            "summary": self.summary,
            "checks": [check.to_json() for check in self.checks],
            "legacy": dict(self.legacy),
            "new": dict(self.new),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> IntervalVerdict:
        """Read `to_json` output back; ValueError on anything else."""
        if not isinstance(data, Mapping):
            raise ValueError(f"verdict must be a mapping, got {type(data).__name__}")
        checks = data.get("checks")
        if not isinstance(checks, list):
            raise ValueError("verdict checks must be a list")
        parsed: list[CheckResult] = []
        for check in checks:
            if not isinstance(check, Mapping):
                raise ValueError("each verdict check must be a mapping")
            parsed.append(CheckResult.from_json(check))
        return cls(
            outcome=_outcome(data),
            checks=tuple(parsed),
            legacy=_figures(data, "legacy"),
            new=_figures(data, "new"),
        )

    @property
    def summary(self) -> str:
        """One line: "fail: error_rate 12.0 % > 5.0 %", "pass: new 412 vs legacy 398 requests,
        p99 3.1 ms vs 2.9 ms", "inconclusive: 12 of 50 requests on new"."""
        if self.outcome is Outcome.FAIL:
            failed = [check for check in self.checks if check.outcome is Outcome.FAIL]
            text = failed[0].compact if failed else "no failing check recorded"
            if len(failed) > 1:
                text += " (also " + ", ".join(check.name for check in failed[1:]) + ")"
            return f"fail: {text}"
        if self.outcome is Outcome.INCONCLUSIVE:
            blocking = [
                check
                for check in self.checks
                if check.outcome is Outcome.INCONCLUSIVE and check.name != "parity"
            ]
            return "inconclusive: " + "; ".join(check.detail for check in blocking)
        text = (
            f"pass: new {self.new.get('requests')} vs legacy {self.legacy.get('requests')} requests"
        )
        new_p99, legacy_p99 = self.new.get("p99_s"), self.legacy.get("p99_s")
        if new_p99 is not None and legacy_p99 is not None:
            text += f", p99 {_ms(new_p99)} vs {_ms(legacy_p99)}"
        return text


def judge_interval(
    legacy: SideWindow, new: SideWindow, checks: Checks, parity: Parity | None = None
) -> IntervalVerdict:
    """The verdict on one interval of canary traffic (see the module rules)."""
    legacy_rate = _rate(legacy)
    new_rate = _rate(new)
    legacy_figures = _side_figures(legacy, legacy_rate)
    new_figures = _side_figures(new, new_rate)
    requests = _requests_check(legacy, new, checks.min_requests)
    if requests.outcome is not Outcome.PASS:
        results = [requests]
        low_traffic_floor = min(LOW_TRAFFIC_MIN_REQUESTS, checks.min_requests)
        if (
            new.requests >= low_traffic_floor
            and new.errors >= LOW_TRAFFIC_MIN_ERRORS
            and new_rate > checks.max_error_rate
        ):
            results.append(_error_rate_check(new, new_rate, checks))
            outcome = Outcome.FAIL
        else:
            outcome = Outcome.INCONCLUSIVE
        return IntervalVerdict(outcome, tuple(results), legacy_figures, new_figures)

    results = [
        requests,
        _error_rate_check(new, new_rate, checks),
        _error_ratio_check(legacy_rate, new_rate, checks),
        _quantile_check("p50", 0.5, checks.max_p50_ratio, legacy, new, checks),
        _quantile_check("p99", 0.99, checks.max_p99_ratio, legacy, new, checks),
        _mann_whitney_check(legacy, new, checks),
    ]
    if parity is not None and checks.min_parity is not None:
        results.append(_parity_check(parity, checks.min_parity))
    if any(check.outcome is Outcome.FAIL for check in results):
        outcome = Outcome.FAIL
    elif any(c.outcome is Outcome.INCONCLUSIVE and c.name != "parity" for c in results):
        outcome = Outcome.INCONCLUSIVE
    else:
        outcome = Outcome.PASS
    return IntervalVerdict(outcome, tuple(results), legacy_figures, new_figures)


def _rate(side: SideWindow) -> float:
    return side.errors / side.requests if side.requests else 0.0


def _side_figures(side: SideWindow, rate: float) -> Figures:
    return {
        "requests": side.requests,
        "errors": side.errors,
        "error_rate": rate if side.requests else None,
        "p50_s": side.latency.quantile(0.5),
        "p99_s": side.latency.quantile(0.99),
    }


def _requests_check(legacy: SideWindow, new: SideWindow, min_requests: int) -> CheckResult:
    short = [
        (name, side.requests)
        for name, side in (("new", new), ("legacy", legacy))
        if side.requests < min_requests
    ]
    observed = float(min(legacy.requests, new.requests))
    if not short:
        detail = (
            f"{new.requests} requests on new, {legacy.requests} on legacy "
            f"(at least {min_requests} each)"
        )
        return CheckResult("requests", Outcome.PASS, observed, float(min_requests), detail)
    detail = ", ".join(f"{count} of {min_requests} requests on {name}" for name, count in short)
    return CheckResult("requests", Outcome.INCONCLUSIVE, observed, float(min_requests), detail)


def _error_rate_check(new: SideWindow, new_rate: float, checks: Checks) -> CheckResult:
    limit = checks.max_error_rate
    failed = new_rate > limit
    detail = (
        f"new error rate {_pct(new_rate)} ({new.errors} of {new.requests} requests) "
        f"{'>' if failed else '<='} {_pct(limit)}"
    )
    return CheckResult("error_rate", _verdict(failed), new_rate, limit, detail)


def _error_ratio_check(legacy_rate: float, new_rate: float, checks: Checks) -> CheckResult:
    baseline = max(legacy_rate, checks.error_rate_floor)
    limit = checks.max_error_ratio * baseline
    failed = new_rate > limit
    against = (
        f"legacy {_pct(legacy_rate)}"
        if legacy_rate >= checks.error_rate_floor
        else f"the floor {_pct(checks.error_rate_floor)} (legacy {_pct(legacy_rate)})"
    )
    detail = (
        f"new error rate {_pct(new_rate)} {'>' if failed else '<='} "
        f"{checks.max_error_ratio:g} x {against}"
    )
    return CheckResult("error_ratio", _verdict(failed), new_rate, limit, detail)


def _quantile_check(
    name: str, q: float, ratio: float, legacy: SideWindow, new: SideWindow, checks: Checks
) -> CheckResult:
    legacy_q = legacy.latency.quantile(q)
    new_q = new.latency.quantile(q)
    if legacy_q is None or new_q is None:
        return CheckResult(
            name, Outcome.INCONCLUSIVE, new_q, None, f"no {name} latency on one side to compare"
        )
    limit = ratio * legacy_q + checks.latency_slack_s
    failed = new_q > limit
    detail = (
        f"new {name} {_ms(new_q)} {'>' if failed else '<='} {ratio:g} x legacy {_ms(legacy_q)} "
        f"+ {checks.latency_slack_s * 1000:g} ms"
    )
    return CheckResult(name, _verdict(failed), new_q, limit, detail)


def _mann_whitney_check(legacy: SideWindow, new: SideWindow, checks: Checks) -> CheckResult:
    legacy_p50 = legacy.latency.quantile(0.5)
    new_p50 = new.latency.quantile(0.5)
    if legacy_p50 is None or new_p50 is None:
        detail = "no latencies on one side to compare"
        return CheckResult("mann_whitney", Outcome.INCONCLUSIVE, None, checks.mw_alpha, detail)
    test = mann_whitney_u(legacy.latency, new.latency)
    shift = new_p50 - legacy_p50
    significant = test.p_value < checks.mw_alpha
    large = test.effect >= checks.mw_min_effect
    material = shift > checks.latency_slack_s
    failed = significant and large and material
    slack_ms = f"{checks.latency_slack_s * 1000:g} ms"
    if failed:
        detail = (
            f"new slower than legacy: p {test.p_value:.2g} < {checks.mw_alpha:g}, "
            f"P(new > legacy) {test.effect:.2f} >= {checks.mw_min_effect:g}, "
            f"p50 {_signed_ms(shift)} > {slack_ms}"
        )
    else:
        detail = (
            f"no material slowdown: p {test.p_value:.2g} "
            f"({'<' if significant else '>='} {checks.mw_alpha:g}), "
            f"P(new > legacy) {test.effect:.2f} ({'>=' if large else '<'} "
            f"{checks.mw_min_effect:g}), p50 {_signed_ms(shift)} "
            f"({'>' if material else '<='} {slack_ms})"
        )
    return CheckResult("mann_whitney", _verdict(failed), test.p_value, checks.mw_alpha, detail)


def _parity_check(parity: Parity, min_parity: float) -> CheckResult:
    if parity.compared < MIN_PARITY_COMPARED:
        detail = f"{parity.compared} of {MIN_PARITY_COMPARED} shadow comparisons for parity"
        return CheckResult("parity", Outcome.INCONCLUSIVE, None, min_parity, detail)
    low, _high = wilson_interval(parity.equal, parity.compared)
    failed = low < min_parity
    detail = (
        f"parity lower bound {_pct(low, 2)} ({parity.equal} of {parity.compared} equal) "
        f"{'<' if failed else '>='} {_pct(min_parity)}"
    )
    return CheckResult("parity", _verdict(failed), low, min_parity, detail)


def _verdict(failed: bool) -> Outcome:
    return Outcome.FAIL if failed else Outcome.PASS


def _pct(fraction: float, digits: int = 1) -> str:
    # Small nonzero rates keep a second digit: 0.2 % of errors is not "0.0 %".
    if 0 < fraction < 0.01:
        digits = max(digits, 2)
    return f"{fraction * 100:.{digits}f} %"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms" if seconds < 0.001 else f"{seconds * 1000:.1f} ms"


def _signed_ms(seconds: float) -> str:
    return ("+" if seconds >= 0 else "-") + _ms(abs(seconds))


def _plain(value: float) -> str:
    return f"{value:.2g}"


def _count(value: float) -> str:
    return f"{value:.0f}"


def _pct2(fraction: float) -> str:
    return _pct(fraction, 2)


# How `CheckResult.compact` shows each check's observed value and limit.
_UNITS: dict[str, Callable[[float], str]] = {
    "requests": _count,
    "error_rate": _pct,
    "error_ratio": _pct,
    "p50": _ms,
    "p99": _ms,
    "mann_whitney": _plain,
    "parity": _pct2,
}


def _field(data: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{key} must be a {kind.__name__}, got {value!r}")
    return value


def _outcome(data: Mapping[str, object]) -> Outcome:
    value = _field(data, "outcome", str)
    try:
        return Outcome(value)
    except ValueError:
        raise ValueError(f"unknown outcome {value!r}") from None


def _number_or_none(data: Mapping[str, object], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number or null, got {value!r}")
    return float(value)


def _figures(data: Mapping[str, object], key: str) -> Figures:
    raw = data.get(key)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{key} figures must be a mapping")
    figures: Figures = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ValueError(f"{key} figure names must be strings, got {name!r}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{key}.{name} must be a number or null, got {value!r}")
        figures[name] = value
    return figures
