"""ShadowResults: counters live in the totals and each flush reports how far they moved."""

from __future__ import annotations

from strangler.diff import BodyKind, Comparison
from strangler.diff.model import Difference, DifferenceKind
from strangler.shadow.drop import DropReason
from strangler.shadow.results import ShadowResults


def _different(path: str) -> Comparison:
    difference = Difference(
        path=path, kind=DifferenceKind.CHANGED, primary=1, shadow=2, rule_path=path
    )
    return Comparison(
        is_equal=False, differences=(difference,), body_compared=True, kind=BodyKind.JSON
    )


def test_a_flush_reports_what_moved_since_the_last_one() -> None:
    results = ShadowResults(clock=lambda: 100.0)
    for _ in range(3):
        results.count_mirrored("r")
        results.count_equal("r")
    results.count_drop("r", DropReason.QUEUE_FULL)
    (first,) = results.take_deltas()
    assert (first.mirrored, first.compared, first.equal, first.different) == (3, 3, 3, 0)
    assert first.dropped == {"queue_full": 1}

    results.count_mirrored("r")
    results.record("r", "GET /x", _different("$.a"))
    results.count_drop("r", DropReason.SHADOW_TIMEOUT)
    (second,) = results.take_deltas()
    assert (second.mirrored, second.compared, second.equal, second.different) == (1, 1, 0, 1)
    assert second.dropped == {"shadow_timeout": 1}
    assert [p.rule_path for p in second.paths] == ["$.a"]
    assert [(s.rule_paths, s.count) for s in second.signatures] == [(("$.a",), 1)]
    # The totals keep counting across flushes; the log reads them.
    totals = results.routes["r"]
    assert (totals.mirrored, totals.compared, totals.different) == (4, 4, 1)
    assert totals.dropped == {"queue_full": 1, "shadow_timeout": 1}


def test_a_route_that_did_not_move_is_not_reported_again() -> None:
    results = ShadowResults(clock=lambda: 100.0)
    results.count_mirrored("quiet")
    results.count_mirrored("busy")
    assert {d.route for d in results.take_deltas()} == {"quiet", "busy"}
    results.count_mirrored("busy")
    (delta,) = results.take_deltas()
    assert delta.route == "busy" and delta.mirrored == 1
    assert results.take_deltas() == ()


def test_paths_and_noise_are_per_flush_and_noise_samples_are_diffed() -> None:
    results = ShadowResults(clock=lambda: 100.0)
    results.record("r", "GET /x", _different("$.a"))
    results.record_noise("r", _different("$.t"))
    (first,) = results.take_deltas()
    assert first.noise_samples == 1 and [n.rule_path for n in first.noise] == ["$.t"]
    results.record_noise("r", _different("$.t"))
    (second,) = results.take_deltas()
    assert second.paths == ()
    assert second.noise_samples == 1 and [(n.rule_path, n.count) for n in second.noise] == [
        ("$.t", 1)
    ]
    assert results.routes["r"].noise_paths == {"$.t": 2}
