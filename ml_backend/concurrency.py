"""Bounded read-ahead over a thread pool: what /predict uses to decode images ahead of the model and what the
CPU workers use to queue forwards."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
