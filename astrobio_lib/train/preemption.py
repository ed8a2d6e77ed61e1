"""Preemption: SIGTERM / SIGINT become a request that the training loop honours at the end of the
current optimizer step (checkpoint within ``preempt_grace_s``, then a distinct exit code).

Spot and interruptible pods send SIGTERM and, a few seconds to a few tens of seconds later,
SIGKILL (RunPod, like Kubernetes, defaults to about 30 s; the grace default of 25 s leaves room
for the process to exit). A second SIGINT (Ctrl-C twice) stops at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Optional

INTERRUPTED_EXIT = 75  # EX_TEMPFAIL: "try again" — the same command continues the run


class Preemption:
    """Context manager that records the first SIGTERM/SIGINT instead of dying.

    Only the main thread can install signal handlers; elsewhere (a notebook kernel that runs cells
    in another thread) it does nothing and says so through :attr:`installed`.
    """

    def __init__(self) -> None:
        self.reason: Optional[str] = None
        self.installed = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.reason is None:
            self.reason = signal.Signals(signum).name

    def __enter__(self) -> "Preemption":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self.installed = False
