"""Where a batch of independent runs executes: here, a local process pool, or Dask.

A sweep or the dissemination experiment is a list of tasks, each a call of one
module-level function on plain arguments (the scenario's TOML tables, overrides, a
seed), so a task runs the same anywhere: serially when ``jobs`` is 1, in ``jobs``
``spawn``-ed processes (nothing shared with the parent), or, given ``dask``, as one task
per run on a Dask distributed scheduler (``tcp://host:8786``) whose workers have the
same RumorDB installed. A run's result depends only on its arguments, so every way gives
the same trace hashes. Results come back as runs finish (``on_done`` drives a progress
bar); callers sort them.

The Dask scheduler runs whatever its clients submit: reach it only over a trusted
network (see the README, "Sweeps on several machines").
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

T = TypeVar("T")

DASK_CONNECT_TIMEOUT_S = 10.0


class ExecutorError(RuntimeError):
    """The runs could not be handed out (e.g. no scheduler at the address)."""


def run_tasks(
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    jobs: int = 1,
    dask: str | None = None,
    on_done: Callable[[T], None] | None = None,
    connect_timeout_s: float = DASK_CONNECT_TIMEOUT_S,
) -> list[T]:
    """``fn(*task)`` for every task, in completion order."""
    if dask is not None:
        return _on_dask(fn, tasks, dask, on_done, connect_timeout_s)
    results: list[T] = []
    if jobs <= 1:
        for task in tasks:
            results.append(fn(*task))
            if on_done is not None:
                on_done(results[-1])
        return results
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = [pool.submit(fn, *task) for task in tasks]
        for future in as_completed(futures):
            results.append(future.result())
            if on_done is not None:
                on_done(results[-1])
    return results


def _on_dask(
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    address: str,
    on_done: Callable[[T], None] | None,
    connect_timeout_s: float,
) -> list[T]:
    # Imported here: the distributed client costs a second at start-up.
    from distributed import Client
    from distributed import as_completed as dask_completed

    try:
        client = Client(address, timeout=connect_timeout_s, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise ExecutorError(f"--dask {address}: cannot reach the scheduler: {exc}") from exc
    results: list[T] = []
    with client:
        # pure=False: two tasks with equal arguments are still two runs.
        futures = [client.submit(fn, *task, pure=False) for task in tasks]
        for future in dask_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
            results.append(future.result())
            if on_done is not None:
                on_done(results[-1])
    return results
