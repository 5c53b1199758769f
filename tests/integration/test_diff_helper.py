"""The worker's diff helper process (shadow/offload.py), driven from a real event loop: it
answers every accepted pair exactly once, in order, as compare_responses would; it refuses
what passes its bound; a helper that dies fails its pairs and the next pair starts another."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import psutil
import pytest

from strangler.diff import BodyKind, Comparison, DiffRules, ResponseSample, compare_responses
from strangler.shadow import DropReason
from strangler.shadow.offload import DiffHelper

JSON = (("Content-Type", "application/json"),)
RULES = DiffRules.from_config({"ignore": ["$.id"], "max_nodes": 50_000})


def pair(n: int) -> tuple[ResponseSample, ResponseSample]:
    """A pair of `n`-element documents that differ at one element and at `id` (ignored)."""
    a = {"id": 1, "items": list(range(n))}
    b = {"id": 2, "items": [*range(n - 1), -1]}
    return ResponseSample(200, JSON, orjson.dumps(a)), ResponseSample(200, JSON, orjson.dumps(b))


class Answers:
    """Collects what `done` callbacks receive, by pair; waits for a number of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.got: dict[int, list[Comparison | None]] = {}
        self.order: list[int] = []
        self._changed = asyncio.Event()

    def done(self, key: int) -> Callable[[Comparison | None], None]:
        def record(comparison: Comparison | None) -> None:
            self.got.setdefault(key, []).append(comparison)
            self.order.append(key)
            self._changed.set()

        return record

    async def wait_for(self, count: int) -> None:
        while len(self.order) < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), timeout=20)


def run(test: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    async def main() -> None:
        await test(asyncio.get_running_loop())

    asyncio.run(main())


def test_pairs_are_answered_once_in_order_as_compare_responses_does() -> None:
    async def test(loop: asyncio.AbstractEventLoop) -> None:
        helper = DiffHelper(loop)
        answers = Answers(loop)
        pairs = [pair(n) for n in (10, 200_000, 30, 5)]
        try:
            for key, (a, b) in enumerate(pairs):
                assert helper.submit(a, b, RULES, 1 << 20, answers.done(key)) is None
            assert not answers.order  # never from inside submit
            await answers.wait_for(len(pairs))
            assert answers.order == [0, 1, 2, 3]
            expected = [compare_responses(a, b, RULES) for a, b in pairs]
            assert [answers.got[key] for key in range(4)] == [[c] for c in expected]
            assert expected[1].kind is BodyKind.OVER_BUDGET  # 400,000 nodes past 50,000
            assert "0 waiting, 0 bytes, 1 starts" in repr(helper)
        finally:
            helper.close()

    run(test)


def test_a_pair_past_the_bound_is_refused_unless_none_waits() -> None:
    async def test(loop: asyncio.AbstractEventLoop) -> None:
        a, b = pair(1000)
        size = len(a.body) + len(b.body)
        helper = DiffHelper(loop, max_waiting_bytes=size)
        answers = Answers(loop)
        try:
            big_a, big_b = pair(10_000)
            assert helper.submit(big_a, big_b, RULES, 1 << 20, answers.done(0)) is None
            refused = helper.submit(a, b, RULES, 1 << 20, answers.done(1))
            assert refused is DropReason.DIFF_BACKLOG
            await answers.wait_for(1)
            assert helper.submit(a, b, RULES, 1 << 20, answers.done(2)) is None
            await answers.wait_for(2)
            assert answers.order == [0, 2]
        finally:
            helper.close()

    run(test)


@pytest.mark.parametrize("restart_interval_s", [0.0, 3600.0])
def test_a_helper_that_dies_fails_its_pairs_and_the_next_pair_starts_another(
    restart_interval_s: float,
) -> None:
    async def test(loop: asyncio.AbstractEventLoop) -> None:
        helper = DiffHelper(loop, restart_interval_s=restart_interval_s)
        answers = Answers(loop)
        try:
            a, b = pair(100)
            assert helper.submit(a, b, RULES, 1 << 20, answers.done(0)) is None
            await answers.wait_for(1)
            assert helper.pid is not None
            process = psutil.Process(helper.pid)
            # Kill it while it holds pairs (it is stopped, so it answers none of them).
            process.suspend()
            for key in (1, 2):
                assert helper.submit(a, b, RULES, 1 << 20, answers.done(key)) is None
            process.kill()
            await answers.wait_for(3)
            assert answers.got == {0: [compare_responses(a, b, RULES)], 1: [None], 2: [None]}
            refused = helper.submit(a, b, RULES, 1 << 20, answers.done(3))
            if restart_interval_s:
                assert refused is DropReason.DIFF_FAILED  # not restarted in a loop
                return
            assert refused is None
            await answers.wait_for(4)
            assert answers.got[3] == [compare_responses(a, b, RULES)]
            assert "2 starts" in repr(helper)
        finally:
            helper.close()

    run(test)


def test_close_answers_the_pairs_left_and_ends_the_helper() -> None:
    async def test(loop: asyncio.AbstractEventLoop) -> None:
        helper = DiffHelper(loop)
        answers = Answers(loop)
        a, b = pair(100)
        assert helper.submit(a, b, RULES, 1 << 20, answers.done(0)) is None
        assert helper.pid is not None
        process = psutil.Process(helper.pid)
        process.suspend()
        assert helper.submit(a, b, RULES, 1 << 20, answers.done(1)) is None
        helper.close()
        assert answers.got == {0: [None], 1: [None]}
        assert not process.is_running()
        assert helper.pid is None

    run(test)
