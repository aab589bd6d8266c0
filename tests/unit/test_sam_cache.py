"""The embedding cache: LRU by bytes, hit/miss counts, one computation per key under concurrent callers."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from converters.errors import SegassistError
from ml_backend.engines.registry import load_engine
from ml_backend.engines.sam_family import Embedding, EmbeddingCache
from ml_backend.settings import Settings

ONE_MIB_FEATURES = (1, 256, 32, 32)  # float32: exactly 1 MiB


def _embedding() -> Embedding:
    return Embedding(torch.zeros(ONE_MIB_FEATURES), (256, 256), (512, 512))


def test_hits_and_misses_are_counted() -> None:
    cache = EmbeddingCache(budget_bytes=8 * 2**20)
    computed = []

    def compute() -> Embedding:
        computed.append(1)
        return _embedding()

    first = cache.get(("a", "m"), compute)
    second = cache.get(("a", "m"), compute)
    assert second is first
    assert len(computed) == 1
    assert (cache.hits, cache.misses) == (1, 1)
    cache.get(("a", "other-model"), compute)  # the model is part of the key
    assert (cache.hits, cache.misses, len(cache)) == (1, 2, 2)


def test_least_recently_used_is_evicted_at_the_budget() -> None:
    cache = EmbeddingCache(budget_bytes=2 * 2**20)  # room for two 1 MiB embeddings
    cache.get(("a", "m"), _embedding)
    cache.get(("b", "m"), _embedding)
    cache.get(("a", "m"), _embedding)  # a is now the most recent
    cache.get(("c", "m"), _embedding)  # evicts b
    assert len(cache) == 2
    misses = cache.misses
    cache.get(("a", "m"), _embedding)
    assert cache.misses == misses
    cache.get(("b", "m"), _embedding)
    assert cache.misses == misses + 1


def test_concurrent_requests_for_a_new_image_compute_it_once() -> None:
    cache = EmbeddingCache(budget_bytes=8 * 2**20)
    calls = []
    start = threading.Barrier(4)

    def slow_compute() -> Embedding:
        calls.append(threading.get_ident())
        time.sleep(0.2)  # long enough that the other threads arrive while it runs
        return _embedding()

    results = []

    def worker() -> None:
        start.wait()
        results.append(cache.get(("img", "m"), slow_compute))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 4 and all(result is results[0] for result in results)
    assert (cache.misses, cache.hits) == (1, 3)


def test_a_failed_computation_is_not_cached_and_can_be_retried() -> None:
    cache = EmbeddingCache(budget_bytes=8 * 2**20)

    def failing() -> Embedding:
        raise SegassistError("broken image")

    with pytest.raises(SegassistError):
        cache.get(("x", "m"), failing)
    assert cache.get(("x", "m"), _embedding).nbytes == 2**20
    assert len(cache) == 1


def test_budget_comes_from_the_settings() -> None:
    settings = Settings.from_env({"SEGASSIST_SAM_CACHE_MB": "64"})
    engine = load_engine("sam", None, torch.device("cpu"), sam_cache_mb=settings.sam_cache_mb)
    assert engine.cache.budget_bytes == 64 * 2**20
    with pytest.raises(SegassistError, match="SEGASSIST_SAM_CACHE_MB"):
        Settings.from_env({"SEGASSIST_SAM_CACHE_MB": "lots"})
