"""Job handlers in child processes: the CPU work of a review never runs where webhooks are answered
or where other jobs wait, and a per-job timeout can really stop it.

Why processes: a pathological PR or config (a regex that backtracks, a glob, a huge diff) keeps the
CPU inside one C call that holds the GIL; a thread cannot interrupt it and every other thread of
the process -- uvicorn's event loop answering GitHub, the worker's heartbeats, other tenants'
jobs -- stops with it. A child process can be killed.

`JobProcessPool` keeps up to `size` long-lived children (spawned, so no inherited sockets, SQLite
connections or locks); each builds its handlers once with `factory(*factory_args, metrics=...)`
(a top-level function: spawn imports it by name) and then runs one job at a time. The parent's
handler for a kind sends the job to an idle child and awaits the answer without blocking its event
loop. Cancelled (the worker's `job_timeout`, a lost lease, shutdown): the child is killed and a
fresh one replaces it later. A child that dies mid-job (a crash, the OOM killer) fails the attempt
with the exit code, so a job that kills its process every time ends dead-lettered, not looping.

Metrics a handler records in the child (funnel, LLM usage, stage timings, GitHub calls) are
recorded as calls and replayed on the parent's `Metrics`, so /metrics shows them as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from reviewbot.app.queue import Job
from reviewbot.app.worker import Handler, PermanentJobError

log = logging.getLogger(__name__)

Factory = Callable[..., dict[str, Handler]]
Step = tuple[Any, ...]


class JobProcessDied(RuntimeError):
    """The child process running a job exited before answering (crash, OOM kill, os._exit)."""


class JobError(RuntimeError):
    """A handler raised in the child; the message is `<ExceptionType>: <message>`."""


# --- metrics across the process boundary -----------------------------------------------------------


class MetricsRecorder:
    """Stands in for `Metrics` in a child: records every call chain (`m.x.labels(a=1).inc()`) so the
    parent can replay it on the real registry. Values must pickle (numbers, text, dataclasses)."""

    def __init__(self, path: tuple[Step, ...] = (), sink: list[tuple[Step, ...]] | None = None) -> None:
        self._path = path
        self._sink: list[tuple[Step, ...]] = [] if sink is None else sink

    def __getattr__(self, name: str) -> MetricsRecorder:
        if name.startswith("__"):
            raise AttributeError(name)
        return MetricsRecorder((*self._path, ("attr", name)), self._sink)

    def __call__(self, *args: Any, **kwargs: Any) -> MetricsRecorder:
        path = (*self._path, ("call", args, kwargs))
        self._sink.append(path)
        return MetricsRecorder(path, self._sink)

    def drain(self) -> list[tuple[Step, ...]]:
        calls, self._sink[:] = list(self._sink), []
        return calls


def replay(metrics: Any, calls: Iterable[tuple[Step, ...]]) -> None:
    """Apply recorded call chains to `metrics` (a chain whose prefix was recorded too, like
    `labels(...)` before `.inc()`, only re-reads the labelled child: no double count)."""
    for path in calls:
        obj = metrics
        try:
            for step in path:
                obj = getattr(obj, step[1]) if step[0] == "attr" else obj(*step[1], **step[2])
        except Exception:
            log.exception("cannot replay a metric from a job process")


# --- the child -------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """A job process must not outlive its worker: a SIGKILLed worker's job is taken over by another
    worker when its lease runs out, and an orphan still running it could post a second review."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)

    def watch() -> None:  # where prctl is missing, or the parent died before it was set
        while True:
            if os.getppid() != parent:
                os._exit(70)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _child_main(conn: multiprocessing.connection.Connection, factory: Factory, args: tuple[Any, ...]) -> None:
    """Build the handlers once, then run the jobs the parent sends until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a job stops
    recorder = MetricsRecorder()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handlers = factory(*args, metrics=recorder)
    conn.send("ready")  # the parent's job timeout starts after this, not with the interpreter
    while True:
        try:
            job: Job = conn.recv()
        except (EOFError, OSError):
            break
        handler = handlers.get(job.kind)
        try:
            if handler is None:
                raise PermanentJobError(f"no handler for job kind {job.kind!r} in the job process")
            loop.run_until_complete(handler(job))
            answer: tuple[str, str] = ("ok", "")
        except PermanentJobError as exc:
            answer = ("permanent", str(exc))
        except Exception as exc:  # the parent records the failed attempt
            log.error("job failed in the job process: %s", exc, exc_info=True)
            answer = ("error", f"{type(exc).__name__}: {exc}")
        conn.send((answer, recorder.drain()))
    loop.close()


# --- the parent ------------------------------------------------------------------------------------


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False


class JobProcessPool:
    """Up to `size` child processes running handlers built by `factory(*factory_args, metrics=...)`.
    A job that has not answered `timeout` seconds after it was handed to a ready child is stopped
    (its process killed) with a TimeoutError; starting a child does not count. Use one pool per
    event loop (the worker's); `close()` stops the children."""

    def __init__(
        self,
        factory: Factory,
        factory_args: tuple[Any, ...] = (),
        *,
        size: int = 2,
        metrics: Any = None,
        timeout: float | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.factory = factory
        self.factory_args = factory_args
        self.size = size
        self.metrics = metrics
        self.timeout = timeout
        self.start_timeout = start_timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: list[_Child] = []
        self._slots: asyncio.Semaphore | None = None
        self.started = 0  # children spawned (tests and logs: a kill spawns a replacement)

    def prewarm(self, n: int = 1) -> None:
        """Start `n` children now, so the first jobs do not wait for an interpreter to start."""
        while len(self._idle) < min(n, self.size):
            self._idle.append(self._spawn())

    def handlers(self, kinds: Iterable[str]) -> dict[str, Handler]:
        """A handler per kind that runs the job in a child process."""
        return {kind: self.run for kind in kinds}

    async def run(self, job: Job) -> None:
        """Run `job` in an idle child; raise what its handler raised (PermanentJobError kept)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            child = self._idle.pop() if self._idle else self._spawn()
            healthy = False
            try:
                if not child.ready:
                    async with asyncio.timeout(self.start_timeout):
                        if await self._answer(child) != "ready":
                            raise JobProcessDied("the job process did not start")
                    child.ready = True
                child.conn.send(job)
                try:
                    async with asyncio.timeout(self.timeout):
                        (status, message), calls = await self._answer(child)
                except TimeoutError:
                    raise TimeoutError(
                        f"job timed out after {self.timeout}s; its process was killed"
                    ) from None
                healthy = True
            finally:
                if healthy:
                    self._idle.append(child)
                else:  # cancelled (timeout, lost lease, shutdown) or dead: never reuse it
                    self._kill(child)
        if self.metrics is not None:
            replay(self.metrics, calls)
        if status == "permanent":
            raise PermanentJobError(message)
        if status == "error":
            raise JobError(message)

    async def _answer(self, child: _Child) -> Any:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = child.conn.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            return child.conn.recv()
        except (EOFError, OSError):
            child.process.join(timeout=5)
            raise JobProcessDied(f"the job's process died (exit code {child.process.exitcode})") from None

    def _spawn(self) -> _Child:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_child_main,
            args=(child_end, self.factory, self.factory_args),
            name="reviewbot-job",
            daemon=True,
        )
        process.start()
        child_end.close()
        self.started += 1
        return _Child(process, parent_end)

    @staticmethod
    def _kill(child: _Child) -> None:
        with contextlib.suppress(Exception):
            child.conn.close()
        if child.process.is_alive():
            child.process.kill()
        child.process.join(timeout=5)

    def close(self) -> None:
        """Stop every idle child (busy ones are killed by their cancelled `run`)."""
        while self._idle:
            child = self._idle.pop()
            with contextlib.suppress(Exception):
                child.conn.close()  # the child sees EOF and exits
            child.process.join(timeout=5)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(timeout=5)
