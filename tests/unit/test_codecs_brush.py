"""Label Studio brush RLE: round trips, label-studio-sdk and rle-rs as oracles, the real editor annotation,
streams other encoders write (literal groups, coloured RGBA, other header sizes), bad input and fuzzing."""

from __future__ import annotations

import hashlib
import json

import label_studio_brush_rle_rs as rle_rs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter.brush import decode_rle, encode_rle, mask2rle
from PIL import Image

from converters import brush
from converters.errors import SegassistError
from tests.unit.codecs_strategies import alpha_planes, bool_masks, placed_masks

SETTINGS = settings(deadline=None, max_examples=150)


def _sdk_alpha(rle: list[int], width: int, height: int) -> np.ndarray:
    return decode_rle(rle).reshape(height, width, 4)[:, :, 3]


def _stream(num: int, groups: list[tuple], word_size: int = 8, sizes: tuple = (3, 4, 8, 16)) -> list[int]:
    """A brush RLE written bit by bit from a group list, independently of the code under test.

    groups: ("repeat", count, value) or ("literal", [values]); the smallest size class that fits is used.
    """
    bits = f"{num:032b}{word_size - 1:05b}" + "".join(f"{size - 1:04b}" for size in sizes)
    for group in groups:
        words = group[2:] if group[0] == "repeat" else group[1]
        count = group[1] if group[0] == "repeat" else len(words)
        size_class = next(t for t, size in enumerate(sizes) if count <= 2**size)
        bits += ("1" if group[0] == "repeat" else "0") + f"{size_class:02b}"
        bits += f"{count - 1:0{sizes[size_class]}b}" + "".join(f"{w:0{word_size}b}" for w in words)
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


# -- round trips and oracles --


@SETTINGS
@given(alpha_planes())
def test_alpha_round_trips_and_matches_the_sdk_both_ways(alpha):
    height, width = alpha.shape
    ours = brush.encode(alpha)
    assert np.array_equal(brush.decode(ours, width, height), alpha)
    assert np.array_equal(_sdk_alpha(ours, width, height), alpha)
    reference = mask2rle(alpha)
    assert np.array_equal(brush.decode(reference, width, height), alpha)
    # The SDK appends 1-8 zero bits where the editor pads to the byte; the groups are identical.
    assert reference in (ours, [*ours, 0])


@SETTINGS
@given(bool_masks())
def test_bool_masks_encode_as_alpha_255(mask):
    height, width = mask.shape
    ours = brush.encode(mask)
    assert ours == brush.encode(mask.astype(np.uint8) * 255)
    assert np.array_equal(brush.decode(ours, width, height), mask.astype(np.uint8) * 255)


@SETTINGS
@given(alpha_planes())
def test_rle_rs_agrees_both_ways(alpha):
    height, width = alpha.shape
    ours = brush.encode(alpha)
    assert np.array_equal(rle_rs.decode_rle(ours, False).reshape(height, width, 4)[:, :, 3], alpha)
    theirs = rle_rs.encode_rle(np.repeat(alpha.ravel(), 4).tobytes(), None, None)
    assert np.array_equal(brush.decode(theirs, width, height), alpha)


@SETTINGS
@given(placed_masks())
def test_encode_mask_from_a_crop_equals_encoding_the_dense_image(mask):
    assert brush.encode_mask(mask) == brush.encode(mask.dense())
    assert brush.decode_mask(brush.encode_mask(mask), mask.width, mask.height) == mask


def test_long_runs_split_like_the_sdk():
    # Runs over 65536 words (16384 pixels) are split; a 300x300 full mask has one 360000-word run.
    for mask in (
        np.ones((300, 300), dtype=bool),
        np.pad(np.ones((200, 300), dtype=bool), ((50, 50), (0, 0))),
    ):
        ours = brush.encode(mask)
        assert mask2rle(mask.astype(np.uint8) * 255) in (ours, [*ours, 0])
        assert np.array_equal(brush.decode(ours, 300, mask.shape[0]), mask * np.uint8(255))


# -- streams written by other encoders --


def test_literal_groups_of_several_words_decode():
    # 2x2 image, 16 words: thi.ng writes non-repeating words as one literal chunk.
    rle = _stream(16, [("literal", [1, 2, 3, 200, 5, 6, 7, 0]), ("repeat", 4, 9), ("literal", [0, 0, 0, 77])])
    assert brush.decode(rle, 2, 2).tolist() == [[200, 0], [9, 77]]
    assert np.array_equal(brush.decode(rle, 2, 2), _sdk_alpha(rle, 2, 2))


def test_long_literal_chunks_in_every_size_class_decode():
    # 10x10 image = 400 words: literal chunks of 20 (class 2) and 300 (class 3) words, then repeats.
    words = np.random.default_rng(11).integers(0, 256, 320).tolist()
    rle = _stream(400, [("literal", words[:20]), ("literal", words[20:]), ("repeat", 80, 3)])
    expected = np.array(words[3::4] + [3] * 20, dtype=np.uint8).reshape(10, 10)
    assert np.array_equal(brush.decode(rle, 10, 10), expected)
    assert np.array_equal(_sdk_alpha(rle, 10, 10), expected)


def test_legacy_coloured_rgba_streams_keep_channel_3():
    rng = np.random.default_rng(3)
    alpha = (rng.random((7, 5)) < 0.4).astype(np.uint8) * rng.integers(1, 256, (7, 5), dtype=np.uint8)
    rgba = np.zeros((7, 5, 4), dtype=np.uint8)
    rgba[..., :3] = np.where(alpha[..., None] > 0, np.array([200, 30, 90], dtype=np.uint8), 0)
    rgba[..., 3] = alpha
    rle = encode_rle(rgba.ravel())
    assert np.array_equal(brush.decode(rle, 5, 7), alpha)


@pytest.mark.parametrize(("word_size", "sizes"), [(8, (1, 2, 5, 10)), (12, (4, 4, 4, 4)), (5, (2, 3, 8, 16))])
def test_any_word_size_and_run_classes_declared_in_the_header(word_size, sizes):
    # 3x2 image = 24 words; values fit every word size used.
    groups = [("repeat", 7, 0), ("literal", [31]), ("repeat", 4, 17), ("repeat", 12, 0)]
    rle = _stream(24, groups, word_size=word_size, sizes=sizes)
    assert brush.decode(rle, 3, 2).tolist() == [[0, 31, 17], [0, 0, 0]]


def test_trailing_padding_byte_of_the_sdk_is_accepted():
    rle = _stream(4, [("repeat", 4, 255)])
    assert brush.decode([*rle, 0], 1, 1).tolist() == [[255]]


# -- the real editor annotation --


@pytest.fixture(scope="module")
def editor_annotation(realdata):
    folder = realdata / "labelstudio"
    task = json.loads((folder / "frontend_examples/image_segmentation/annotations/1.json").read_text())
    meta = json.loads((folder / "derived/image_segmentation_decoded_meta.json").read_text())
    expected = np.asarray(Image.open(folder / "derived/image_segmentation_alpha_2242x2802.png"))
    return task["annotations"][0]["result"][0]["value"]["rle"], meta, expected


def test_real_editor_annotation_decodes_to_the_reference_alpha(editor_annotation):
    rle, meta, expected = editor_annotation
    alpha = brush.decode(rle, meta["width"], meta["height"])
    assert np.array_equal(alpha, expected)
    assert hashlib.sha256(alpha.tobytes()).hexdigest() == meta["alpha_sha256"]
    assert len(np.unique(alpha)) == 29  # anti-aliased levels kept
    assert brush.to_mask(alpha, threshold=1).area == meta["area_alpha_gt0"]
    assert brush.to_mask(alpha).area == meta["area_alpha_ge128"]
    assert list(brush.to_mask(alpha, threshold=1).bbox) == meta["bbox_xywh_alpha_gt0"]


@pytest.mark.slow  # the SDK decoder needs ~5-20 s for this 1 MB stream
def test_real_editor_annotation_matches_the_sdk_and_re_encodes(editor_annotation):
    rle, meta, expected = editor_annotation
    width, height = meta["width"], meta["height"]
    assert np.array_equal(_sdk_alpha(rle, width, height), expected)
    ours = brush.encode(expected)
    assert np.array_equal(rle_rs.decode_rle(ours, False).reshape(height, width, 4)[:, :, 3], expected)
    assert np.array_equal(brush.decode(ours, width, height), expected)


def test_real_export_with_original_size(realdata):
    tasks = json.loads(
        (realdata / "labelstudio/derived/image_segmentation_export_with_dims.json").read_text()
    )
    result = tasks[0]["annotations"][0]["result"][0]
    mask = brush.decode_mask(result["value"]["rle"], result["original_width"], result["original_height"])
    assert mask.shape == (2802, 2242)
    assert mask.area == 253348


# -- thresholds --


def test_threshold_default_is_128_and_1_means_visible():
    alpha = np.array([[0, 1, 127, 128, 255]], dtype=np.uint8)
    assert brush.to_mask(alpha).dense().tolist() == [[False, False, False, True, True]]
    assert brush.to_mask(alpha, threshold=1).dense().tolist() == [[False, True, True, True, True]]
    for threshold in (0, 256):
        with pytest.raises(SegassistError, match="threshold"):
            brush.to_mask(alpha, threshold)


# -- bad input --


def test_truncated_streams_raise():
    rle = brush.encode(np.eye(9, dtype=bool))
    for cut in range(len(rle) - 1):
        with pytest.raises(SegassistError, match="truncated"):
            brush.decode(rle[:cut], 9, 9)


def test_header_count_must_equal_width_height_4():
    rle = brush.encode(np.ones((4, 6), dtype=bool))
    assert brush.decode(rle, 6, 4).shape == (4, 6)
    with pytest.raises(SegassistError, match="declares 96 values"):
        brush.decode(rle, 4, 6 + 1)


def test_runs_past_the_declared_count_and_wide_words_raise():
    with pytest.raises(SegassistError, match="past the declared"):
        brush.decode(_stream(4, [("repeat", 8, 255)]), 1, 1)
    with pytest.raises(SegassistError, match="above 255"):
        brush.decode(_stream(4, [("repeat", 4, 300)], word_size=9), 1, 1)


@pytest.mark.parametrize(
    "rle",
    ["0,7,83", None, 12, {"rle": [1]}, [0, 256], [-1, 3], [1.5, 2], ["a"], np.zeros((2, 2), dtype=np.uint8)],
)
def test_wrong_types_raise(rle):
    with pytest.raises(SegassistError, match="brush RLE"):
        brush.decode(rle, 1, 1)


@pytest.mark.parametrize(("width", "height"), [(0, 1), (1, -2), (1.5, 2), ("3", 2), (True, 1)])
def test_bad_image_size_raises(width, height):
    with pytest.raises(SegassistError, match="image size"):
        brush.decode([0] * 8, width, height)


@pytest.mark.parametrize(
    "mask", [np.zeros((2, 2, 1), dtype=bool), np.zeros((3, 3)), np.zeros((0, 4), dtype=bool), [[1, 0]]]
)
def test_encode_rejects_what_is_not_a_2d_bool_or_uint8_array(mask):
    with pytest.raises(SegassistError, match="brush mask"):
        brush.encode(mask)


def _peer_alphas(rle: list[int], width: int, height: int) -> dict[str, np.ndarray]:
    """The alpha planes label-studio-sdk and rle-rs decode from a stream, for each that accepts it (no
    exception, exactly width x height x 4 values): the oracles for every stream our decoder accepts too."""
    decoders = {"label-studio-sdk": decode_rle, "rle-rs": lambda words: rle_rs.decode_rle(words, False)}
    alphas = {}
    for name, decoder in decoders.items():
        try:
            flat = np.asarray(decoder(list(rle)))
        except Exception:  # each peer fails its own way (ValueError, OverflowError, IndexError)
            continue
        if flat.size == width * height * 4:
            alphas[name] = flat.reshape(height, width, 4)[:, :, 3]
    return alphas


def _assert_agrees_with_the_peers(rle: list[int], width: int, height: int) -> bool:
    """Decode with ours; where a peer accepts the stream too, the alpha planes are equal. Returns whether
    ours accepted it (else it raised SegassistError)."""
    try:
        alpha = brush.decode(rle, width, height)
    except SegassistError:
        return False
    assert alpha.shape == (height, width) and alpha.dtype == np.uint8
    for name, theirs in _peer_alphas(rle, width, height).items():
        assert np.array_equal(alpha, theirs), f"{name} decodes this stream differently"
    return True


@settings(deadline=None, max_examples=400)
@given(st.integers(1, 6), st.integers(1, 6), st.binary(max_size=64), st.booleans())
def test_fuzzed_streams_give_an_alpha_plane_or_segassist_error(width, height, tail, keep_header):
    # With a matching header the random bytes reach the group parser; without one, the header check.
    header = list((width * height * 4).to_bytes(4, "big")) if keep_header else []
    _assert_agrees_with_the_peers(header + list(tail), width, height)


@st.composite
def _random_group_streams(draw):
    """Well-formed and slightly wrong streams from random groups: any word size and run size classes the
    header allows, repeats and literal chunks, with a total that may miss the declared count."""
    width, height = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    word_size = draw(st.integers(8, 12))
    sizes = tuple(sorted(draw(st.lists(st.integers(1, 16), min_size=4, max_size=4))))
    longest = 2 ** sizes[-1]
    word = st.integers(0, 255)
    group = st.one_of(
        st.tuples(st.just("repeat"), st.integers(1, min(longest, 24)), word),
        st.builds(lambda words: ("literal", words), st.lists(word, min_size=1, max_size=min(longest, 12))),
    )
    groups = draw(st.lists(group, min_size=1, max_size=8))
    count = width * height * 4
    total = sum(g[1] if g[0] == "repeat" else len(g[1]) for g in groups)
    while total < count:  # repeats fill the image, so most streams are whole (some overshoot)
        run = min(longest, count - total)
        groups.append(("repeat", run, draw(word)))
        total += run
    declared = count + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    return _stream(max(declared, 1), groups, word_size, sizes), width, height


@settings(deadline=None, max_examples=300)
@given(_random_group_streams())
def test_random_group_streams_decode_like_the_sdk_and_rle_rs(case):
    rle, width, height = case
    _assert_agrees_with_the_peers(rle, width, height)


def test_the_peer_comparison_sees_streams_both_sides_accept():
    # The fuzzing above compares only where the peers accept: this stream is one they all accept.
    rle = _stream(36, [("repeat", 8, 0), ("literal", [1, 2, 3, 200]), ("repeat", 24, 9)])
    assert set(_peer_alphas(rle, 3, 3)) == {"label-studio-sdk", "rle-rs"}
    assert _assert_agrees_with_the_peers(rle, 3, 3)
