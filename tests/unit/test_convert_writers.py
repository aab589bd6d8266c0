"""Panoptic and semantic writers never emit overlapping segments, for every overlap policy but `error`.

The PNG each renderer produces is decoded independently (OpenCV / Pillow + numpy) and compared with what its
JSON claims: when segments overlapped on the canvas, some id or class would own fewer pixels than listed.
"""

from __future__ import annotations

import io

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from converters import Category, ImageRecord, Mask, Origin, Segment
from converters.formats.coco_panoptic import CocoPanopticRenderer
from converters.formats.common import Options
from converters.formats.semantic import SemanticRenderer
from converters.overlap import POLICIES

H, W = 20, 24
CATEGORIES = [
    Category(1, "cat"),
    Category(2, "dog"),
    Category(3, "sky", isthing=False),
    Category(4, "road", False),
]

ellipses = st.tuples(
    st.integers(0, H - 1), st.integers(0, W - 1), st.integers(1, 9), st.integers(1, 9), st.integers(1, 4)
)


def ellipse(cy: int, cx: int, ry: int, rx: int) -> Mask:
    yy, xx = np.mgrid[:H, :W]
    return Mask.from_dense(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)


def image_of(specs, scores) -> ImageRecord:
    segments = [
        Segment(ellipse(cy, cx, ry, rx), category, score=scores[i], origin=Origin(region_id=i, order=i))
        for i, (cy, cx, ry, rx, category) in enumerate(specs)
    ]
    return ImageRecord(id=1, file_name="img.jpg", width=W, height=H, segments=segments)


def decode_rgb_ids(png: bytes) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


common = {
    "specs": st.lists(ellipses, min_size=1, max_size=10),
    "scores": st.lists(st.floats(0, 1), min_size=10, max_size=10),
    "policy": st.sampled_from([p for p in POLICIES if p != "error"]),
    "things_over_stuff": st.booleans(),
    "min_kept_fraction": st.sampled_from([0.0, 0.6]),
}


@settings(max_examples=50, deadline=None)
@given(**common)
def test_panoptic_output_never_overlaps(specs, scores, policy, things_over_stuff, min_kept_fraction):
    image = image_of(specs, scores)
    options = Options(
        overlap=policy, things_over_stuff=things_over_stuff, min_kept_fraction=min_kept_fraction
    )
    rendered = CocoPanopticRenderer(CATEGORIES, options).render(image)
    _, annotation, png = rendered.payload
    ids = decode_rgb_ids(png)
    present, counts = np.unique(ids[ids > 0], return_counts=True)
    listed = {info["id"]: info for info in annotation["segments_info"]}
    assert set(present.tolist()) == set(listed) and 0 not in listed
    for segment_id, count in zip(present.tolist(), counts.tolist(), strict=True):
        assert listed[segment_id]["area"] == count
    stuff = [info["category_id"] for info in listed.values() if info["category_id"] in (3, 4)]
    assert len(stuff) == len(set(stuff))  # one segment per stuff category
    # Every pixel some input covered is labeled, unless a segment was dropped.
    covered = np.zeros((H, W), dtype=bool)
    for segment in image.segments:
        covered |= segment.mask.dense()
    if not rendered.report:
        assert np.array_equal(ids > 0, covered)


@settings(max_examples=50, deadline=None)
@given(**common)
def test_semantic_output_never_overlaps(specs, scores, policy, things_over_stuff, min_kept_fraction):
    image = image_of(specs, scores)
    options = Options(
        overlap=policy, things_over_stuff=things_over_stuff, min_kept_fraction=min_kept_fraction
    )
    rendered = SemanticRenderer(CATEGORIES, options).render(image)
    _, png = rendered.payload
    label_map = np.asarray(Image.open(io.BytesIO(png)))
    assert label_map.dtype == np.uint8 and label_map.shape == (H, W)
    # Each labeled pixel's class is that of a segment covering it in the input: nothing painted from nowhere.
    for value in np.unique(label_map[label_map > 0]).tolist():
        category = CATEGORIES[value - 1].id
        allowed = np.zeros((H, W), dtype=bool)
        for segment in image.segments:
            if segment.category_id == category:
                allowed |= segment.mask.dense()
        assert not np.any((label_map == value) & ~allowed)
    moved = rendered.report.get("overlap", {}).get("pixels_moved", 0)
    total = sum(segment.mask.area for segment in image.segments)
    # Exclusive: the labeled pixels are the input pixels minus those moved (no pixel counted twice).
    assert int(np.count_nonzero(label_map)) == total - moved
