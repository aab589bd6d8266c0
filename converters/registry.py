"""The formats by name: each one's reader, writer and QA checks, listed once.

The model knows no format and no format module knows another; the commands (convert, qa, eval) find a
format here. `read(name, path, **options)` is the public way to read a dataset of any format into the model.
A new format is a module in `converters/formats/` (a reader and a writer), its checks in `converters/qa/`,
and one entry below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from converters.brush import check_threshold
from converters.errors import SegassistError
from converters.formats.coco import CocoSink, CocoSource
from converters.formats.coco_panoptic import CocoPanopticSink, CocoPanopticSource
from converters.formats.common import Options, Sink, Source
from converters.formats.labelstudio import LabelStudioSink, LabelStudioSource
from converters.formats.semantic import SemanticSink, SemanticSource
from converters.io import Outputs
from converters.model import Category, Dataset, ImageRecord
from converters.overlap import POLICIES
from converters.qa import coco as coco_checks
from converters.qa import labelstudio as labelstudio_checks
from converters.qa import panoptic as panoptic_checks
from converters.qa import semantic as semantic_checks
from converters.qa.core import QAOptions, Run


@dataclass(frozen=True)
class Format:
    reader: Callable[[Path, Options], Source]
    writer: Callable[[Path, list[Category], Options, Outputs], Sink]
    # start(path, options) -> Run: QA's checks of the format, reading the input through `reader`'s module.
    checks: Callable[[Path, QAOptions], Run]


FORMATS: dict[str, Format] = {
    "labelstudio": Format(LabelStudioSource, LabelStudioSink, labelstudio_checks.start),
    "coco": Format(CocoSource, CocoSink, coco_checks.start),
    "coco-panoptic": Format(CocoPanopticSource, CocoPanopticSink, panoptic_checks.start),
    "semantic": Format(SemanticSource, SemanticSink, semantic_checks.start),
}


def get(name: str, role: str = "") -> Format:
    """The format called `name`; an unknown name is a SegassistError listing the known ones."""
    if name not in FORMATS:
        what = f"{role} format" if role else "format"
        raise SegassistError(f"unknown {what} {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def read(name: str, input: str | Path, **options: Any) -> Dataset:
    """The input as the model: its categories and a one-shot iterator over its images, streamed.

    Takes the reading options of `convert` (annotations, predictions, alpha_threshold, images ...). Tasks with
    nothing to convert are left out; a SegassistError names the file, image or task, and region.
    """
    source = get(name, "source").reader(Path(input), options_from(options))
    return Dataset(source.categories, loaded_images(source))


def loaded_images(source: Source) -> Iterator[ImageRecord]:
    """Every item of a reader as an image, in order; items with nothing to convert are left out."""
    for item in source.items():
        try:
            image = source.load(item)
        except SegassistError as error:
            raise error.at(**source.where(item)) from None
        if image is not None:
            yield image


def options_from(options: dict[str, Any]) -> Options:
    """`Options` from keyword arguments, checked before any file is read."""
    known = {item.name for item in fields(Options)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown conversion option(s): {', '.join(sorted(unknown))}")
    for key in ("categories_file", "label_config", "images", "png_dir"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    settings = Options(**options)
    if settings.overlap not in POLICIES:
        raise SegassistError(f"overlap policy must be one of {', '.join(POLICIES)}, got {settings.overlap!r}")
    check_threshold(settings.alpha_threshold)
    return settings
