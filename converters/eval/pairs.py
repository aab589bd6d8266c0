"""Every (GT id, PRED id) pixel pair of two id maps and its count, in one compiled pass.

This is panopticapi's combined id map (`gt * 2**24 + pred`, counted with np.unique) without the sort: the
kernel walks both maps once, merges runs of equal pairs (label maps are long runs) and adds each run to an
open-addressing hash table. From the pair counts come every intersection and both sides' areas, so nothing
is ever done per segment on the full image. The kernel releases the GIL, so images run in threads.
"""

from __future__ import annotations

import numba
import numpy as np

ID_BITS = 24  # COCO panoptic ids are R + 256·G + 256²·B
ID_MASK = (1 << ID_BITS) - 1
_EMPTY = np.uint64(2**64 - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: multiply, keep the top bits


@numba.njit(cache=True, nogil=True)
def _slot(keys: np.ndarray, key: np.uint64, bits: int) -> int:
    """The slot holding `key`, or the empty slot where it goes (linear probing)."""
    mask = np.int64((1 << bits) - 1)
    slot = np.int64((key * _GOLDEN) >> np.uint64(64 - bits))
    while keys[slot] != key and keys[slot] != _EMPTY:
        slot = (slot + 1) & mask
    return slot


@numba.njit(cache=True, nogil=True)
def _grown(keys: np.ndarray, counts: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    new_keys = np.full(1 << (bits + 1), _EMPTY, dtype=np.uint64)
    new_counts = np.zeros(1 << (bits + 1), dtype=np.int64)
    for old in range(keys.size):
        if keys[old] != _EMPTY:
            slot = _slot(new_keys, keys[old], bits + 1)
            new_keys[slot] = keys[old]
            new_counts[slot] = counts[old]
    return new_keys, new_counts


@numba.njit(cache=True, nogil=True)
def _count(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (gt << 24 | pred) and their pixel counts, unordered; ids are masked to 24 bits. A run is
    scanned 16 pixels at a time while it lasts (one vector comparison each), then pixel by pixel; indices are
    unsigned, so numba adds no negative-index checks (together about 1.4x)."""
    bits = 12
    keys = np.full(1 << bits, _EMPTY, dtype=np.uint64)
    counts = np.zeros(1 << bits, dtype=np.int64)
    used = 0
    id_mask = np.uint64(ID_MASK)
    shift = np.uint64(ID_BITS)
    one, block = np.uint64(1), np.uint64(16)
    size = np.uint64(gt.size)
    start = np.uint64(0)
    while start < size:
        g, p = gt[start], pred[start]
        end = start + one
        while end + block <= size:  # a run of one pair
            differ = 0
            for k in range(block):
                differ |= (gt[end + k] ^ g) | (pred[end + k] ^ p)
            if differ:
                break
            end += block
        while end < size and gt[end] == g and pred[end] == p:
            end += one
        key = ((np.uint64(g) & id_mask) << shift) | (np.uint64(p) & id_mask)
        slot = _slot(keys, key, bits)
        if keys[slot] == _EMPTY:
            if 2 * (used + 1) > keys.size:  # keep the table at most half full
                keys, counts = _grown(keys, counts, bits)
                bits += 1
                slot = _slot(keys, key, bits)
            keys[slot] = key
            used += 1
        counts[slot] += np.int64(end - start)
        start = end
    filled = keys != _EMPTY
    return keys[filled], counts[filled]


def pair_counts(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt ids, pred ids, pixel counts) of every pair of ids that meet, sorted by (gt, pred).

    `gt` and `pred` are integer id maps of one shape (only the low 24 bits of each id count).
    """
    if gt.shape != pred.shape:
        raise ValueError(f"id maps differ in shape: {gt.shape} and {pred.shape}")
    keys, counts = _count(np.ascontiguousarray(gt).reshape(-1), np.ascontiguousarray(pred).reshape(-1))
    order = np.argsort(keys)
    keys, counts = keys[order], counts[order]
    return (keys >> np.uint64(ID_BITS)).astype(np.int64), (keys & np.uint64(ID_MASK)).astype(np.int64), counts
