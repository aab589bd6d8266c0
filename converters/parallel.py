"""The one bounded parallel map: results in input order, a bounded number of items in flight.

`Executor.map` and `Pool.imap` submit the whole input at once, so a streamed input (a 10,000-task export read
task by task) would be read to its end before the first result. Here an item is read only when a slot frees.

- `process_map`: over worker processes (convert, QA: the work is Python that holds the GIL);
- `thread_map`: over threads (eval: the work is numpy that releases it, and needs no pickling);
- `pool_map` and `submit_ahead` (its futures): over an executor the caller keeps (the backend's thread pools).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Items in flight per worker: one running, one queued, so a worker that finishes starts the next item at once.
AHEAD_PER_WORKER = 2


def submit_ahead(
    pool: Executor, run: Callable[[T], R], items: Iterable[T], ahead: int
) -> Iterator[Future[R]]:
    """The futures of `run(item)`, in the items' order. Items are read only as needed: when a future is
    handed out, up to `ahead` items (it included) have been submitted, so the pool works on the next ones
    while the caller waits for this one, and a long input is never submitted at once.

    Closing the iterator early cancels what has not started and waits for what has, so a caller holding a
    lock around it never leaves work running after it lets go."""
    pending: deque[Future[R]] = deque()
    remaining = iter(items)
    try:
        while True:
            pending.extend(
                pool.submit(run, item) for item in itertools.islice(remaining, ahead - len(pending))
            )
            if not pending:
                return
            yield pending.popleft()
    finally:
        for future in pending:
            future.cancel()
        futures.wait(pending)


def pool_map(pool: Executor, function: Callable[[T], R], items: Iterable[T], ahead: int) -> Iterator[R]:
    """`function` on each item in `pool`, results in input order, `ahead` items in flight; the first error
    is raised. Closing the iterator early cancels what has not started and waits for what has."""
    with contextlib.closing(submit_ahead(pool, function, items, ahead)) as submitted:
        for future in submitted:
            yield future.result()


def thread_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(function, items)` over `workers` threads, in input order, `AHEAD_PER_WORKER` items per worker in
    flight; the first error is raised."""
    workers = max(1, workers)
    with ThreadPoolExecutor(workers) as pool:
        yield from pool_map(pool, function, items, AHEAD_PER_WORKER * workers)


def process_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map(function, items)` over `workers` processes, in input order, `AHEAD_PER_WORKER` items per worker in
    flight; the first error is raised. With `workers <= 1` it runs here, one item at a time.

    The workers are forked with `function` already in them, so `function` (and what it holds: a reader, a
    renderer, options) is never pickled; only the items and the results travel."""
    if workers <= 1:
        yield from map(function, items)
        return
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_adopt, initargs=(function,)) as pool:
        yield from pool_map(pool, _run_adopted, items, AHEAD_PER_WORKER * workers)


_adopted: Callable[[Any], Any] | None = None  # the function of `process_map`, in a worker process


def _adopt(function: Callable[[Any], Any]) -> None:
    global _adopted
    _adopted = function


def _run_adopted(item: Any) -> Any:
    assert _adopted is not None
    return _adopted(item)
