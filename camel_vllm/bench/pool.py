"""Simulations in worker processes: a pool that reports the first failure at once.

A run that fails in a worker becomes a one-line :class:`SimWorkerError` (a ConfigError stays
itself), and the other workers are stopped, so a failing run never leaves the parent waiting.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from camel_vllm.core.config import ConfigError
from camel_vllm.core.errors import CamelError


class SimWorkerError(CamelError, RuntimeError):
    """A run failed in a worker process; ``str(err)`` is one line naming the run and the error."""


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
                  workers: int) -> Any:
    """Yield ``fn(task)`` for every task from a pool of ``workers`` forked processes, as each ends.

    The first error (raised in a worker, or a worker that died: ``BrokenProcessPool``) is
    raised here at once and the other workers are stopped, so a failing run never leaves the
    parent waiting.
    """
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=ctx)
    finished = False
    try:
        futures = {pool.submit(in_worker, fn, t, label) for t, label in zip(tasks, labels)}
        while futures:
            done, futures = wait(futures, return_when=FIRST_EXCEPTION)
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
