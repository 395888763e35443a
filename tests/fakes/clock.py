"""A clock that tests move by hand: pass it where production code takes `clock=time.time`."""

from __future__ import annotations

import time


class ManualClock:
    """Returns `t` (seconds since the epoch; the real time when made, unless given)."""

    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t

    @property
    def now(self) -> float:
        return self.t

    @now.setter
    def now(self, value: float) -> None:
        self.t = value

    def advance(self, seconds: float) -> None:
        self.t += seconds
