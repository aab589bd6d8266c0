"""Reference regions drawn by hand on scikit-image's bundled photos, for the SAM tests.

Each outline was traced once by looking at a 4x enlargement of the image with a 10-pixel grid (pixel
coordinates x, y; never taken from a model's output). Tracing is accurate to about 2 to 3 pixels along the
outline, which is what the IoU thresholds in the tests allow for, together with the model's own error.
"""

from __future__ import annotations

from converters import Mask
from converters.polygons import coco_to_mask

COFFEE_SIZE = (400, 600)  # skimage.data.coffee(): height, width
ASTRONAUT_SIZE = (512, 512)  # skimage.data.astronaut()

# The teaspoon on the right of the saucer: its handle top above the saucer rim, then (after the part hidden
# behind the cup) the neck and the bowl.
SPOON_HANDLE = [(399, 68), (412, 66), (423, 72), (423, 85), (417, 105), (412, 125), (408, 145), (404, 150),
                (401, 130), (402, 100), (398, 80)]  # fmt: skip
SPOON_BOWL = [
    (386, 198), (390, 200), (386, 225), (387, 240), (400, 250), (405, 262), (406, 282), (402, 300),
    (395, 315), (380, 324), (360, 324), (342, 315), (330, 300), (326, 282), (329, 270), (340, 257),
    (357, 247), (372, 237), (377, 225), (382, 210),
]  # fmt: skip
# The saucer with everything on it (cup and spoon): its outer outline, running over the cup's rim at the top.
SAUCER_WITH_CUP = [
    (77, 200), (80, 250), (100, 290), (130, 325), (170, 355), (220, 375), (280, 385), (340, 382), (400, 365),
    (445, 335), (470, 290), (480, 240), (475, 190), (455, 145), (425, 105), (405, 60), (395, 40), (375, 28),
    (340, 20), (290, 17), (240, 20), (205, 30), (185, 42), (175, 60), (172, 75), (145, 82), (110, 105),
    (90, 150),
]  # fmt: skip
# The black helmet held at the bottom right of astronaut(), cut by the image's right and bottom borders.
HELMET = [(275, 512), (277, 470), (280, 445), (287, 420), (297, 398), (312, 377), (330, 362), (350, 352),
          (370, 346), (400, 344), (432, 350), (460, 366), (482, 390), (495, 417), (498, 450), (505, 460),
          (512, 465), (512, 512)]  # fmt: skip


def reference(size: tuple[int, int], *outlines: list[tuple[int, int]]) -> Mask:
    """The mask of hand-drawn outlines on an image of `size` (height, width)."""
    height, width = size
    return coco_to_mask(
        [[coord for point in outline for coord in point] for outline in outlines], height, width
    )
