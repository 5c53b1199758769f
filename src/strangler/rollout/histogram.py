"""LatencyHistogram: log-bucketed latencies in seconds, cheap to record, merge and ship as JSON.

Pure. No I/O, no clock reads. The same idea as HDR Histogram and DDSketch (Masson, Rim & Lee,
"DDSketch: a fast and fully-mergeable quantile sketch with relative-error guarantees", VLDB
2019), written out by hand because `record` runs on the proxy hot path.

Rules:
- Bucket i holds [MIN_S·GAMMA**i, MIN_S·GAMMA**(i+1)); its representative value is the geometric
  midpoint MIN_S·GAMMA**(i+0.5). With GAMMA = 1.02 any value in [MIN_S, MAX_S] is read back
  within sqrt(1.02) - 1 < 1 % of itself, and so is any quantile.
- Values below MIN_S (1 µs), negative values and NaN land in bucket 0; values at or above MAX_S
  (one hour), infinity included, land in the top bucket MAX_INDEX. Nothing is ever dropped:
  `count` is the number of `record` calls.
- Buckets are sparse (`dict[int, int]`): a route whose latencies sit between 1 ms and 50 ms
  touches about 200 of the 1,112 buckets.
- `quantile(q)` is the nearest-rank quantile: the representative value of the bucket holding
  the ceil(q·count)-th smallest value (the smallest at q = 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

GAMMA: Final = 1.02
MIN_S: Final = 1e-6
MAX_S: Final = 3600.0
LOG_GAMMA: Final = math.log(GAMMA)
INV_LOG_GAMMA: Final = 1.0 / LOG_GAMMA
MAX_INDEX: Final = int(math.log(MAX_S / MIN_S) * INV_LOG_GAMMA)

# q·count in floating point can land a hair above an integer (0.07 * 100 = 7.000000000000001),
# which would move the nearest rank up by one; ranks are integers, so shave that noise off.
_RANK_EPSILON: Final = 1e-9


def bucket_value(index: int) -> float:
    """The representative value (seconds) of bucket `index`: the geometric midpoint of its bounds.

    ValueError when `index` is outside [0, MAX_INDEX].
    """
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"bucket index must be in [0, {MAX_INDEX}], got {index}")
    return MIN_S * math.exp((index + 0.5) * LOG_GAMMA)


class LatencyHistogram:
    """Counts of latencies (seconds) per log bucket; `count` is the total.

    Not thread-safe, like everything on the event loop; one histogram per worker and interval,
    merged by the analyzer.
    """

    __slots__ = ("buckets", "count")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0

    def __repr__(self) -> str:
        p50 = self.quantile(0.5)
        shown = "empty" if p50 is None else f"p50 {p50 * 1000:.3g} ms"
        return f"<LatencyHistogram {self.count} values in {len(self.buckets)} buckets, {shown}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self.count == other.count and self.buckets == other.buckets

    # Mutable, so unhashable (defining __eq__ already implies this; said out loud for readers).
    __hash__ = None  # type: ignore[assignment]

    def record(self, seconds: float) -> None:
        """Count one latency. Once per proxied request: one log, one dict get/set (compiled:
        strangler.native)."""
        # `not >=` rather than `<`: NaN compares false both ways, so NaN joins the negatives and
        # the sub-microsecond values in bucket 0 without a separate isnan call.
        if not seconds >= MIN_S:
            index = 0
        elif seconds < MAX_S:
            # int() truncates, which is floor for these non-negative logs; compiled, both
            # math.log and int() of a float are C calls, not Python ones.
            index = int(math.log(seconds / MIN_S) * INV_LOG_GAMMA)
        else:
            index = MAX_INDEX
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1

    def merge(self, other: LatencyHistogram) -> None:
        """Add `other`'s counts to this histogram, in place (`other` is left as it was)."""
        buckets = self.buckets
        # A copy of the items, so merging a histogram into itself doubles it as expected.
        for index, count in list(other.buckets.items()):
            buckets[index] = buckets.get(index, 0) + count
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (seconds), None when empty; ValueError unless 0 <= q <= 1."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count - _RANK_EPSILON))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return bucket_value(index)
        # Unreachable while count equals the sum of the buckets, which every method keeps.
        raise AssertionError("histogram count exceeds its buckets")

    def sorted_counts(self) -> list[tuple[float, int]]:
        """(representative value, count) per non-empty bucket, ascending by value."""
        return [(bucket_value(index), self.buckets[index]) for index in sorted(self.buckets)]

    def to_json(self) -> dict[str, int]:
        """The non-empty buckets as {"index": count}, ascending; `from_json` reads it back."""
        return {str(index): count for index, count in sorted(self.buckets.items()) if count}

    @classmethod
    def from_json(cls, data: object) -> LatencyHistogram:
        """Rebuild a histogram from `to_json` output.

        ValueError unless every key is a decimal bucket index in [0, MAX_INDEX] and every count
        a non-negative int (bools are refused: JSON `true` is not a count).
        """
        # Typed as any object: it comes from JSON, and compiled code would check the declared
        # key and value types itself with a TypeError, where callers expect this ValueError.
        if not isinstance(data, Mapping):
            raise ValueError(f"histogram must be a mapping, got {type(data).__name__}")
        histogram = cls()
        for key, count in data.items():
            if not (isinstance(key, str) and key.isascii() and key.isdigit()):
                raise ValueError(f"histogram bucket key must be a decimal index, got {key!r}")
            index = int(key)
            if index > MAX_INDEX:
                raise ValueError(f"histogram bucket {index} is above the top bucket {MAX_INDEX}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"histogram bucket {key} count must be an int >= 0, got {count!r}")
            if count:
                histogram.buckets[index] = histogram.buckets.get(index, 0) + count
                histogram.count += count
        return histogram
