"""A daemon thread that works until it is told to stop: the control plane's loops (the state
watcher, the canary analyzer, the SLO monitor, the webhook relay) are each one."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class Background(ABC):
    """Runs `_run` on a daemon thread from `start` on; `_run` returns once `_stop` is set."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    @abstractmethod
    def _run(self) -> None: ...
