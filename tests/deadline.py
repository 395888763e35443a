"""A per-call deadline for tests of hostile input: a regression fails in seconds, not at the
suite's 300 s timeout (or never: one quadratic regex ran for over 10 minutes).

SIGALRM interrupts pure-Python loops and Python's `re` alike (sre checks for signals), so the
call under test is stopped where it hangs and the failure names the input. Off the main thread,
where signals cannot be delivered, the elapsed time is still checked when the call returns.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Overran(BaseException):
    """The call took longer than its deadline.

    A BaseException, so no `except Exception` (or pydantic turning an AssertionError raised inside
    a validator into a validation error) in the code under test can swallow it.
    """


@contextmanager
def deadline(seconds: float, what: str = "call") -> Iterator[None]:
    """Fail with Overran if the block runs longer than `seconds`."""
    started = time.perf_counter()
    on_main = threading.current_thread() is threading.main_thread()

    def _alarm(_signum: int, _frame: Any) -> None:
        raise Overran(f"{what}: still running after {seconds:g} s")

    previous: Any = None
    if on_main:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if on_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - started
    if elapsed > seconds:
        raise AssertionError(f"{what}: took {elapsed:.2f} s (deadline {seconds:g} s)")


def within(seconds: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), failing with Overran past `seconds`."""
    with deadline(seconds, getattr(fn, "__name__", "call")):
        return fn(*args, **kwargs)
