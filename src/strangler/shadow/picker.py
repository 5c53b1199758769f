"""The compared headers of an answer, picked without a Python loop over its headers.

A backend sends the same header names in the same order answer after answer. So the positions
of the compared names are worked out once per distinct sequence of names, and then read with
`operator.itemgetter`, in C. Per shadow copy this was the largest share of the comparison's
cost (bench/proxy_bench.py --shadow). At most `max_shapes` sequences are remembered per route;
past that they are worked out each time, so odd backends cost time, not memory.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

# A picked answer: the compared names (lowercase, in order) and their values.
Picked = tuple[tuple[bytes, ...], object]


def _nothing(values: Sequence[bytes]) -> tuple[()]:
    return ()


class HeaderPicker:
    """Picks one route's compared headers out of (names, values) lists."""

    def __init__(self, kept: frozenset[bytes], *, max_shapes: int = 256) -> None:
        self.kept = kept
        self._max_shapes = max_shapes
        self._shapes: dict[tuple[bytes, ...], tuple[tuple[bytes, ...], Callable[..., object]]] = {}

    def pick(self, names: Sequence[bytes], values: Sequence[bytes]) -> Picked:
        """A value that is equal for two answers exactly when their compared headers are: the
        same names in the same order (case folded) with the same values, byte for byte."""
        key = tuple(names)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shape(key)
        picked_names, get = shape
        return picked_names, get(values)

    def pairs(self, names: Sequence[bytes], values: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        """The compared headers as (name as received, value): for the diff engine."""
        kept = self.kept
        pairs = zip(names, values, strict=True)
        return [(name, value) for name, value in pairs if name.lower() in kept]

    def _shape(self, key: tuple[bytes, ...]) -> tuple[tuple[bytes, ...], Callable[..., object]]:
        at = [i for i, name in enumerate(key) if name.lower() in self.kept]
        # itemgetter of one index returns the item, of several a tuple: either compares right,
        # since answers with different counts already differ in their names.
        get: Callable[..., object] = operator.itemgetter(*at) if at else _nothing
        shape = (tuple(key[i].lower() for i in at), get)
        if len(self._shapes) < self._max_shapes:
            self._shapes[key] = shape
        return shape
