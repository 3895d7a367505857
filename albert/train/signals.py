"""SIGINT/SIGTERM while training: finish the step, save, exit."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

logger = logging.getLogger("albert")


class StopSignal:
    """Catch SIGINT/SIGTERM while training: the loop checks `.received`, finishes its step,
    saves and exits. A second signal restores the default handler's behaviour (abort now)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # second signal: stop waiting for a clean save
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name
        logger.warning(
            "%s received: finishing the current step, saving a checkpoint, then exiting", self.received
        )

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        self.restore()
