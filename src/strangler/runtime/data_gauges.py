"""The data parity gauges a worker exports: each table's last `data diff` run and `data watch`'s
drift and lag, read from the store off the event loop at most every DATA_GAUGES_INTERVAL_S.

Rules: the read runs on the loop's default executor, one at a time; a failed read keeps the
gauges of the last good one (the store's outage is counted and logged where the store is
flushed, not here). Without `data:` in the config there are no gauges and no reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from strangler.config import Config
from strangler.control.state import Store
from strangler.errors import StranglerError

log = logging.getLogger(__name__)

# `data diff` runs take minutes and are hours apart: a quarter-minute is fresh enough, and
# keeps the store read off every scrape.
DATA_GAUGES_INTERVAL_S = 15.0
Gauge = tuple[tuple[str, ...], float]


def data_gauges(store: Store) -> list[Gauge]:
    """The gauges of every table the store has runs of (its newest run)."""
    gauges: list[Gauge] = []
    for table, status in store.data_statuses().items():
        last = status.last
        gauges.append((("data_rows_different", table), float(last.different)))
        gauges.append((("data_rows_missing", table, "new"), float(last.missing_in_new)))
        gauges.append((("data_rows_missing", table, "legacy"), float(last.missing_in_legacy)))
        gauges.append((("data_last_run_timestamp", table), last.finished_at))
    for table, watch in store.watch_statuses().items():
        gauges.append((("data_watch_drift", table), float(watch.open_drift + watch.untracked)))
        if watch.lag_s is not None:
            gauges.append((("data_watch_lag_seconds", table), watch.lag_s))
    return gauges


class DataGauges:
    """The newest data parity gauges; `tick` starts a read when one is due."""

    def __init__(self, store: Callable[[], Store], loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop
        self._next_read = 0.0
        self._reading: asyncio.Future[list[Gauge]] | None = None
        self.gauges: list[Gauge] = []

    def __repr__(self) -> str:
        state = "reading" if self._reading is not None else "idle"
        return f"<DataGauges {len(self.gauges)} gauges, {state}>"

    def tick(self, now: float, config: Config) -> None:
        """Called from the loop's sweep; `now` is the loop's clock."""
        if config.data is None:
            self.gauges = []
            return
        if self._reading is not None or now < self._next_read:
            return
        self._next_read = now + DATA_GAUGES_INTERVAL_S
        self._reading = self._loop.run_in_executor(None, self._read)
        self._reading.add_done_callback(self._done)

    def _read(self) -> list[Gauge]:
        return data_gauges(self._store())

    def _done(self, future: asyncio.Future[list[Gauge]]) -> None:
        self._reading = None
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.gauges = future.result()
        elif isinstance(error, StranglerError):
            log.debug("data parity gauges not refreshed: %s", error)
        else:
            log.error("data parity gauges not refreshed", exc_info=error)
