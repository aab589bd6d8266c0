"""converters.parallel: the one bounded map (input order, bounded read-ahead, errors, forked workers)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from converters.errors import SegassistError
from converters.parallel import process_map, submit_ahead, thread_map


def test_process_map_keeps_input_order_and_runs_in_other_processes() -> None:
    here = os.getpid()
    offset = 1000  # a closure: the workers are forked with the function, so it need not pickle

    def run(item: int) -> tuple[int, int]:
        time.sleep(0.2 if item == 0 else 0.0)  # the first item finishes last
        return item + offset, os.getpid()

    results = list(process_map(run, range(6), 2))
    assert [value for value, _ in results] == [1000, 1001, 1002, 1003, 1004, 1005]
    assert here not in {pid for _, pid in results}
    assert [value for value, _ in process_map(run, range(3), 1)] == [1000, 1001, 1002]
    assert {pid for _, pid in process_map(run, range(3), 1)} == {here}


def test_process_map_reads_a_bounded_amount_ahead() -> None:
    read: list[int] = []

    def items():
        for item in range(1000):
            read.append(item)
            yield item

    results = process_map(abs, items(), 2)
    assert next(results) == 0
    # Two items per worker in flight when the first result is handed out: never the whole input.
    assert read == [0, 1, 2, 3]
    results.close()


def test_process_map_raises_the_first_error_with_its_fields() -> None:
    def run(item: int) -> int:
        if item == 2:
            raise SegassistError("bad item", file="x.json", task_id=item)
        return item

    with pytest.raises(SegassistError) as caught:
        list(process_map(run, range(5), 2))
    assert caught.value.task_id == 2 and "x.json" in str(caught.value)


def test_submit_ahead_over_a_thread_pool_is_bounded_and_ordered() -> None:
    read: list[int] = []

    def items():
        for item in range(100):
            read.append(item)
            yield item

    with ThreadPoolExecutor(2) as pool:
        futures = submit_ahead(pool, lambda item: item * 2, items(), 3)
        assert next(futures).result() == 0 and read == [0, 1, 2]
        assert [future.result() for future in futures] == [2 * item for item in range(1, 100)]


def test_thread_map_keeps_order_bounds_read_ahead_and_raises() -> None:
    read: list[int] = []

    def items():
        for item in range(100):
            read.append(item)
            yield item

    def run(item: int) -> int:
        time.sleep(0.05 if item == 0 else 0.0)  # the first finishes last
        return item * 3

    results = thread_map(run, items(), 2)
    assert next(results) == 0 and read == [0, 1, 2, 3]
    assert list(results) == [3 * item for item in range(1, 100)]
    with pytest.raises(ZeroDivisionError):
        list(thread_map(lambda item: 1 // item, [1, 0, 2], 2))
