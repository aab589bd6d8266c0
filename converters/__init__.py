"""segassist converters: one segmentation model, exact mask codecs, formats, overlap policies and QA."""

from converters.errors import SegassistError
from converters.mask import Mask
from converters.model import Category, Dataset, ImageRecord, Origin, Segment

__all__ = ["Category", "Dataset", "ImageRecord", "Mask", "Origin", "SegassistError", "Segment"]
