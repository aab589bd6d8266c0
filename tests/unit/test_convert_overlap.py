"""converters.overlap: each policy's winner, the report's accounting, and exclusivity as a property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from converters import Category, Mask, Origin, SegassistError, Segment
from converters.overlap import POLICIES, resolve

H, W = 12, 16
CATEGORIES = [Category(1, "cat"), Category(2, "dog"), Category(3, "grass", isthing=False)]


def box(top: int, left: int, bottom: int, right: int) -> Mask:
    dense = np.zeros((H, W), dtype=bool)
    dense[top:bottom, left:right] = True
    return Mask.from_dense(dense)


def segment(mask: Mask, category_id: int = 1, *, order: int, score: float | None = None) -> Segment:
    origin = Origin(file="f.json", task_id=7, region_id=f"r{order}", order=order)
    return Segment(mask=mask, category_id=category_id, score=score, origin=origin)


@pytest.fixture
def big_and_small() -> list[Segment]:
    # Big (8x8 = 64 px, first, high score) and small (4x4 = 16 px, later, low score) overlap on 2x2 = 4 px.
    return [
        segment(box(0, 0, 8, 8), order=0, score=0.9),
        segment(box(6, 6, 10, 10), 2, order=1, score=0.2),
    ]


def test_order_policy_lets_the_later_region_win(big_and_small):
    kept, report = resolve(big_and_small, "order", categories=CATEGORIES)
    assert [s.mask.area for s in kept] == [60, 16]
    assert kept[0].mask.intersection_area(kept[1].mask) == 0
    assert report.pixels_moved == 4
    [change] = report.changes
    assert (change.index, change.origin.region_id, change.lost_to) == (0, "r0", [(1, 4)])


def test_score_policy_lets_the_higher_score_win(big_and_small):
    kept, report = resolve(big_and_small, "score", categories=CATEGORIES)
    assert [s.mask.area for s in kept] == [64, 12]
    assert kept[1].mask.bbox == (6, 6, 4, 4)  # an L shape keeps its box
    assert report.changes[0].lost_to == [(0, 4)]


def test_area_policy_puts_the_smaller_segment_on_top(big_and_small):
    kept, _ = resolve(big_and_small[::-1], "area", categories=CATEGORIES)
    assert [s.mask.area for s in kept] == [16, 60]


def test_things_over_stuff_comes_before_the_policy():
    stuff_on_top = [segment(box(0, 0, 4, 4), 1, order=0), segment(box(0, 0, 8, 8), 3, order=1)]
    kept, _ = resolve(stuff_on_top, "order", categories=CATEGORIES, things_over_stuff=True)
    assert [(s.category_id, s.mask.area) for s in kept] == [(1, 16), (3, 48)]
    kept, _ = resolve(stuff_on_top, "order", categories=CATEGORIES)
    assert [(s.category_id, s.mask.area) for s in kept] == [(3, 64)]


def test_min_kept_fraction_drops_a_mostly_covered_segment_and_frees_its_pixels():
    segments = [
        segment(box(0, 0, 4, 10), order=0, score=0.1),  # 40 px, the lowest, keeps 16 (40 %)
        segment(box(0, 0, 4, 8), order=1, score=0.5),  # 32 px, keeps 32 - 24 = 8 (25 %)
        segment(box(0, 2, 4, 8), order=2, score=0.9),  # 24 px, on top
    ]
    kept, report = resolve(segments, "score", categories=CATEGORIES, min_kept_fraction=0.3)
    assert [(s.origin.region_id, s.mask.area) for s in kept] == [("r0", 16), ("r2", 24)]
    dropped = report.dropped
    assert [change.origin.region_id for change in dropped] == ["r1"]
    assert "min_kept_fraction" in dropped[0].dropped
    # r0 lost only to r2: the dropped r1 took nothing.
    assert report.changes[0].lost_to == [(2, 24)]


def test_min_area_and_empty_masks_are_dropped():
    segments = [
        segment(box(0, 0, 2, 2), order=0),
        segment(Mask.empty(H, W), order=1),
        segment(box(5, 5, 9, 9), order=2),
    ]
    kept, report = resolve(segments, "order", categories=CATEGORIES, min_area=5)
    assert [s.origin.region_id for s in kept] == ["r2"]
    assert {change.origin.region_id: change.dropped is not None for change in report.changes} == {
        "r0": True,
        "r1": True,
    }
    assert report.segments_kept == 1 and report.segments_in == 3


def test_error_policy_names_every_overlapping_pair_with_pixels_and_origin(big_and_small):
    third = segment(box(0, 12, 4, 16), order=2)  # touches nobody
    with pytest.raises(SegassistError) as caught:
        resolve([*big_and_small, third], "error", categories=CATEGORIES)
    message = str(caught.value)
    assert "file f.json" in message and "task 7" in message
    assert "1 overlapping segment pair" in message
    assert "region r0" in message and "region r1" in message and "4 px" in message
    assert "r2" not in message


def test_error_policy_passes_disjoint_segments_through_unchanged():
    segments = [segment(box(0, 0, 4, 4), order=0), segment(box(4, 4, 8, 8), order=1)]
    kept, report = resolve(segments, "error", categories=CATEGORIES)
    assert [s.mask for s in kept] == [s.mask for s in segments]
    assert report.changes == [] and report.pixels_moved == 0


def test_report_serialises_and_summarises(big_and_small):
    _, report = resolve(big_and_small, "order", categories=CATEGORIES)
    data = report.to_dict()
    assert data["pixels_moved"] == 4
    assert data["changes"][0]["region_id"] == "r0"
    assert data["changes"][0]["lost_to"] == [{"index": 1, "pixels": 4}]
    assert report.summary() == "overlap policy order: 2/2 segments kept, 0 dropped, 4 pixels moved"


def test_segments_of_different_image_sizes_are_refused():
    other = Mask.from_dense(np.ones((3, 3), dtype=bool))
    with pytest.raises(SegassistError, match="3x3"):
        resolve([segment(box(0, 0, 2, 2), order=0), segment(other, order=1)], "order", categories=CATEGORIES)


# -- property: every policy but `error` gives exclusive masks inside the originals, fully accounted

boxes = st.tuples(
    st.integers(0, H - 1), st.integers(0, W - 1), st.integers(1, H), st.integers(1, W), st.integers(1, 3)
)


@settings(max_examples=60, deadline=None)
@given(
    specs=st.lists(boxes, min_size=1, max_size=8),
    scores=st.lists(st.floats(0, 1), min_size=8, max_size=8),
    policy=st.sampled_from([p for p in POLICIES if p != "error"]),
    things_over_stuff=st.booleans(),
    min_kept_fraction=st.sampled_from([0.0, 0.5]),
)
def test_resolution_is_exclusive_and_accounted(specs, scores, policy, things_over_stuff, min_kept_fraction):
    segments = [
        segment(box(top, left, min(H, top + h), min(W, left + w)), category, order=i, score=scores[i])
        for i, (top, left, h, w, category) in enumerate(specs)
    ]
    kept, report = resolve(
        segments,
        policy,
        categories=CATEGORIES,
        things_over_stuff=things_over_stuff,
        min_kept_fraction=min_kept_fraction,
    )
    coverage = np.zeros((H, W), dtype=np.int32)
    for s in kept:
        coverage += s.mask.dense()
        original = segments[int(s.origin.region_id[1:])].mask
        assert s.mask.intersection_area(original) == s.mask.area  # only own pixels
        assert s.mask.area == int(s.mask.dense().sum())  # area/bbox rebuilt from pixels
    assert coverage.max(initial=0) <= 1
    assert sum(s.mask.area for s in segments) - sum(s.mask.area for s in kept) == report.pixels_moved
    # Nothing is lost to void unless a segment was dropped.
    union = np.zeros((H, W), dtype=bool)
    for s in segments:
        union |= s.mask.dense()
    if not report.dropped:
        assert (coverage == 1).sum() == union.sum()
    # Deterministic: the same input gives the same output.
    again, _ = resolve(
        segments,
        policy,
        categories=CATEGORIES,
        things_over_stuff=things_over_stuff,
        min_kept_fraction=min_kept_fraction,
    )
    assert [s.mask for s in again] == [s.mask for s in kept]
