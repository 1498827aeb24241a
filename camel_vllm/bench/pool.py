"""Simulations in worker processes: a pool that reports the first failure at once, and progress.

A run that fails in a worker becomes a one-line :class:`SimWorkerError` (a ConfigError stays
itself), and the other workers are stopped, so a failing run never leaves the parent waiting.

Progress: a task calls :func:`report_progress` (e.g. once per simulated request, the
``SimEngine``'s ``on_finish``); in a worker that adds to a counter shared with the parent
(a ``multiprocessing.Value``, one lock per call), which the parent reads while it waits and
hands to its ``progress`` callback; run in the parent (:func:`local_results`) it calls
``progress`` directly. Outside both it does nothing.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence

from camel_vllm.core.config import ConfigError
from camel_vllm.core.errors import CamelError


class SimWorkerError(CamelError, RuntimeError):
    """A run failed in a worker process; ``str(err)`` is one line naming the run and the error."""


#: Seconds between the parent's reads of the shared progress counter.
PROGRESS_POLL_S = 0.25

_reporter: Callable[[int], None] | None = None


def report_progress(n: int) -> None:
    """Count ``n`` units (simulated requests) of the task running now towards its caller's progress."""
    if _reporter is not None:
        _reporter(n)


def _count_into(counter: Any) -> Callable[[int], None]:
    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    return add


def _init_worker(counter: Any) -> None:
    global _reporter
    _reporter = _count_into(counter)


def local_results(fn: Callable[[Any], Any], tasks: Sequence[Any], labels: Sequence[str],
                  progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Yield ``fn(task)`` for every task, in this process, with the same errors and progress as
    :func:`pool_results`."""
    global _reporter
    for task, label in zip(tasks, labels, strict=False):
        previous, _reporter = _reporter, progress
        try:
            result = in_worker(fn, task, label)
        finally:
            _reporter = previous
        yield result


def in_worker(fn: Callable[[Any], Any], task: Any, label: str) -> Any:
    """``fn(task)``, with any error but a :class:`ConfigError` made a one-line :class:`SimWorkerError`.

    Whatever a worker raises must unpickle in the parent (an exception that does not, such as
    one whose constructor takes several arguments, used to leave ``multiprocessing.Pool``
    waiting forever); ConfigError pickles by its arguments.
    """
    try:
        return fn(task)
    except ConfigError:
        raise
    except Exception as err:
        raise SimWorkerError(f"{label}: {type(err).__name__}: {err}") from err


def pool_results(fn: Callable[[Any], Any], tasks: Sequence[Any], labels: Sequence[str],
                 workers: int, progress: Callable[[int], None] | None = None) -> Iterator[Any]:
    """Yield ``fn(task)`` for every task from a pool of ``workers`` forked processes, as each ends.

    The first error (raised in a worker, or a worker that died: ``BrokenProcessPool``) is
    raised here at once and the other workers are stopped, so a failing run never leaves the
    parent waiting. ``progress(n)`` gets what the tasks report (:func:`report_progress`), read
    every :data:`PROGRESS_POLL_S` seconds and before each result is yielded.
    """
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
                               initargs=(counter,))
    finished = False
    passed = 0

    def pass_on() -> None:
        nonlocal passed
        if progress is not None:
            now = counter.value
            if now > passed:
                progress(now - passed)
                passed = now

    try:
        futures = {pool.submit(in_worker, fn, t, label) for t, label in zip(tasks, labels, strict=False)}
        while futures:
            done, futures = wait(futures, timeout=PROGRESS_POLL_S if progress else None,
                                 return_when=FIRST_EXCEPTION)
            pass_on()
            for future in done:
                yield future.result()
        finished = True
    finally:
        # ProcessPoolExecutor cannot stop a running task: on an error its worker processes are
        # killed (private ``_processes``, read before shutdown clears it), so the error is
        # reported now, not when the other simulations end.
        processes = [] if finished else list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=finished, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
