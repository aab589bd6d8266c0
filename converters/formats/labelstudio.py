"""Label Studio JSON export (a list of tasks) ⇄ the model.

Reading streams the export with ijson, one task at a time: a 10,000-task export is never loaded whole. Per
task it takes the non-cancelled annotations (`all`, the `latest`, or the `ground-truth` one) or, with
`predictions`, the predictions; every region result becomes one segment (ls_regions). Writing streams tasks
that Label Studio imports, with the masks as annotations or predictions (BrushLabels RLE by default,
PolygonLabels with `segmentation="polygon"`).
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import ijson
import numba
import numpy as np

from converters import naming, polygons
from converters.errors import SegassistError
from converters.formats.common import (
    Options,
    Rendered,
    check_categories,
    image_file_size,
    read_categories_file,
)
from converters.formats.ls_regions import (
    RegionRead,
    is_labelled_region,
    is_region,
    read_region_tolerantly,
    result_image_size,
    result_label,
    result_to_segment,
    segment_to_result,
)
from converters.io import Outputs, dump_json
from converters.lsconfig import (
    DEFAULT_FROM_NAME,
    DEFAULT_IMAGE_KEY,
    DEFAULT_TO_NAME,
    LabelConfig,
    read_label_config,
)
from converters.model import Category, ImageRecord, Origin

ANNOTATION_CHOICES = ("all", "latest", "ground-truth")


@dataclass(frozen=True)
class LabelStudioReading:
    """What the reader takes from the options once its categories are known (travels to the workers)."""

    annotations: str = "latest"
    predictions: bool = False
    alpha_threshold: int = 128
    images: Path | None = None

    @classmethod
    def of(cls, options: Options) -> LabelStudioReading:
        return cls(options.annotations, options.predictions, options.alpha_threshold, options.images)


@dataclass(frozen=True)
class LabelStudioWriting:
    """What the writer takes from the options besides the control it writes to."""

    polygon_tolerance: float = 1.0
    write_predictions: bool = False
    model_version: str = "segassist"
    image_root: str | None = None

    @classmethod
    def of(cls, options: Options) -> LabelStudioWriting:
        return cls(
            options.polygon_tolerance, options.write_predictions, options.model_version, options.image_root
        )


class LabelStudioSource:
    """A Label Studio JSON export; items are (position, task) pairs."""

    def __init__(self, path: Path, options: Options) -> None:
        self.path = Path(path)
        self.options = LabelStudioReading.of(options)
        if options.annotations not in ANNOTATION_CHOICES:
            raise SegassistError(f"--annotations must be one of {', '.join(ANNOTATION_CHOICES)}")
        if options.predictions and options.annotations == "ground-truth":
            raise SegassistError("predictions have no ground truth: use --annotations all or latest")
        self.config = read_label_config(options.label_config) if options.label_config else None
        config = self.config
        self.image_key = config.image_key if config else None
        if options.categories_file:
            self.categories = read_categories_file(options.categories_file)
        elif config:
            self.categories = config.categories
            check_categories(self.categories, str(options.label_config))
        else:
            self.categories = self._labels_in_order_of_appearance()
        self._category_ids = {category.name: category.id for category in self.categories}

    def items(self) -> Iterator[tuple[int, dict[str, Any]]]:
        with self.path.open("rb") as handle:
            for position, task in enumerate(iter_tasks(handle, str(self.path))):
                if not isinstance(task, dict):
                    raise SegassistError(
                        f"{naming.name('task', naming.position_ref(position))} is not a JSON object",
                        file=str(self.path),
                    )
                yield position, task

    def where(self, item: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        position, task = item
        return {"file": str(self.path), "task_id": naming.task_ref(position, task)}

    def load(self, item: tuple[int, dict[str, Any]]) -> ImageRecord | None:
        """The task as an image with its regions, or None when it has nothing to convert (not labeled)."""
        position, task = item
        task_id = naming.task_ref(position, task)
        sources = self._selected(task)
        if sources is None:
            return None
        file_name = reference_file_name(self._image_reference(task))
        image_size = None
        segments = []
        order = 0
        for annotation_id, results, default_score in sources:
            for result in results:
                if not is_region(result):
                    continue
                origin = Origin(
                    file=str(self.path), task_id=task_id, annotation_id=annotation_id, order=order
                )
                try:
                    label = result_label(result)
                    if self.config is not None:
                        # The control the result names must have its label (when the config has that
                        # control: QA reports a result from an unknown control).
                        for mismatch in self.config.mismatches(result, [label]):
                            if mismatch.kind == "label":
                                raise SegassistError(mismatch.message)
                    if label not in self._category_ids:
                        raise SegassistError(f"label {label!r} is not among the categories")
                    if image_size is None:
                        image_size = self._image_size(result, file_name)
                    elif result_image_size(result, image_size) != image_size:
                        raise SegassistError(
                            "original_width/original_height differ from the task's other regions "
                            f"({image_size[0]}x{image_size[1]})"
                        )
                    segment = result_to_segment(
                        result,
                        category_id=self._category_ids[label],
                        alpha_threshold=self.options.alpha_threshold,
                        image_size=image_size,
                        origin=origin,
                    )
                except SegassistError as error:
                    raise error.at(**{**origin.where(), "region_id": result.get("id")}) from None
                if segment.score is None and default_score is not None:
                    segment.score = float(default_score)
                segments.append(segment)
                order += 1
        if image_size is None:  # no regions: only the image file can tell the size
            if not self.options.images:
                raise SegassistError("the task has no regions, so its image size is unknown: pass --images")
            image_size = image_file_size(Path(self.options.images) / file_name)
        return ImageRecord(
            # Tasks without an id (import files) are numbered by position, from 1.
            id=task_id if isinstance(task_id, int) else position + 1,
            file_name=file_name,
            width=image_size[0],
            height=image_size[1],
            segments=segments,
            extra={"data": task.get("data") or {}},
        )

    def _selected(self, task: dict[str, Any]) -> list[tuple[Any, list[dict[str, Any]], Any]] | None:
        """(annotation id, results, score) of the annotations or predictions to convert; None when none."""
        kind = "prediction" if self.options.predictions else "annotation"
        entries = (
            task.get("predictions")
            if self.options.predictions
            else task.get("annotations", task.get("completions"))
        )
        entries = entries or []
        if self.options.predictions:
            if any(not isinstance(entry, dict) for entry in entries):
                # Label Studio's JSON export lists prediction ids unless predictions are exported too.
                raise SegassistError(
                    "the task lists prediction ids, not predictions: export the project with its predictions"
                )
        # (ref, entry): an entry without an id is named by its position among all of the task's entries.
        numbered = [(naming.annotation_ref(kind, i, entry), entry) for i, entry in enumerate(entries)]
        if self.options.predictions:
            chosen = numbered[-1:] if self.options.annotations == "latest" else numbered
        else:
            candidates = [pair for pair in numbered if not pair[1].get("was_cancelled")]
            if self.options.annotations == "ground-truth":
                candidates = [pair for pair in candidates if pair[1].get("ground_truth")]
            if self.options.annotations == "all" or not candidates:
                chosen = candidates
            else:
                chosen = [
                    max(
                        enumerate(candidates),
                        key=lambda item: (
                            item[1][1].get("updated_at") or item[1][1].get("created_at") or "",
                            item[0],
                        ),
                    )[1]
                ]
        if not chosen:
            return None
        return [(ref, entry.get("result") or [], entry.get("score")) for ref, entry in chosen]

    def _image_reference(self, task: dict[str, Any]) -> str:
        data = task.get("data") or {}
        key = self.image_key or DEFAULT_IMAGE_KEY
        if isinstance(data.get(key), str):
            return data[key]
        reference = next((value for value in data.values() if isinstance(value, str)), None)
        if reference is None:
            raise SegassistError(f"task data has no image reference (key {key!r})")
        return reference

    def _image_size(self, result: dict[str, Any], file_name: str) -> tuple[int, int]:
        """The result's original size, else the size of the image file in --images."""
        image_size = None
        if not (result.get("original_width") and result.get("original_height")) and self.options.images:
            image_size = image_file_size(Path(self.options.images) / file_name)
        return result_image_size(result, image_size)

    def _labels_in_order_of_appearance(self) -> list[Category]:
        """Without a category file or config: every label used, in order of first appearance, ids from 1."""
        names: dict[str, None] = {}
        for item in self.items():
            try:
                sources = self._selected(item[1]) or []
            except SegassistError as error:
                raise error.at(**self.where(item)) from None
            for _, results, _ in sources:
                for result in results:
                    # An unlabeled region is reported per task by the conversion pass (or skipped there).
                    if is_region(result):
                        with contextlib.suppress(SegassistError):
                            names.setdefault(result_label(result))
        return [Category(id=position, name=name) for position, name in enumerate(names, start=1)]


@dataclass
class EntryRead:
    """One annotation or prediction of a task, read tolerantly: where it stops being readable (not an
    object, cancelled, no result list) and the regions it holds (labelled results only), in order."""

    kind: str  # "annotation" or "prediction"
    id: Any  # its id, or its name by position (naming.annotation_ref)
    is_object: bool = True
    cancelled: bool = False
    has_results: bool = True
    regions: list[RegionRead] = field(default_factory=list)


@dataclass
class TaskRead:
    """One task of an export read tolerantly, for QA (nothing is refused): its image's file name and every
    annotation and prediction with the facts and segments of its regions."""

    file: str
    task_id: Any  # naming.task_ref
    file_name: str
    entries: list[EntryRead]


def read_task_tolerantly(
    file: str, position: int, task: dict[str, Any], alpha_threshold: int, config: LabelConfig | None
) -> TaskRead:
    """Every annotation and prediction of a task (Label Studio 1.23 lists predictions as ids unless they were
    exported: those are left out); the image's file name from the task's first non-empty string value."""
    task_id = naming.task_ref(position, task)
    predictions = [p for p in _list(task.get("predictions")) if not isinstance(p, int) or isinstance(p, bool)]
    sources = [
        (kind, index, entry)
        for kind, entries in (
            ("annotation", _list(task.get("annotations", task.get("completions")))),
            ("prediction", predictions),
        )
        for index, entry in enumerate(entries)
    ]
    reads = []
    for kind, index, entry in sources:
        read = EntryRead(kind, naming.annotation_ref(kind, index, entry))
        reads.append(read)
        if not isinstance(entry, dict):
            read.is_object = False
        elif entry.get("was_cancelled"):
            read.cancelled = True
        elif not isinstance(entry.get("result"), list):
            read.has_results = False
        else:
            origin = Origin(file=file, task_id=task_id, annotation_id=read.id)
            read.regions = [
                read_region_tolerantly(
                    result, alpha_threshold, config, dataclasses.replace(origin, order=order)
                )
                for order, result in enumerate(
                    r for r in entry["result"] if isinstance(r, dict) and is_labelled_region(r)
                )
            ]
    reference = next((v for v in (task.get("data") or {}).values() if isinstance(v, str) and v), None)
    return TaskRead(file, task_id, reference_file_name(reference) if reference else "", reads)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def iter_tasks(handle: BinaryIO, file: str) -> Iterator[Any]:
    """Tasks from a JSON list, or the one task of a cloud-storage `<task_id>.json` file, as ijson.items would
    give them (an element that is not an object included), except that each brush RLE list of ints 0..255
    is `bytes` (parsed fast, and what `brush` decodes without a conversion). A UTF-8 byte order mark is
    skipped; invalid JSON is an error naming the last complete task and the byte offset."""
    start = len(codecs.BOM_UTF8) if handle.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8 else 0
    handle.seek(start)
    head = handle.read(4096).lstrip()
    handle.seek(start)
    if not head:
        raise SegassistError("the file is empty: a Label Studio export is a JSON list of tasks", file=file)
    prefix = "item" if head.startswith(b"[") else ""
    lifter = _RleLifter()
    tasks = ijson.sendable_list()
    parser = ijson.items_coro(tasks, prefix, use_float=True)
    count, last, offset = 0, None, start
    while True:
        chunk = handle.read(max(_READ_BYTES, len(lifter.undone)))
        offset += len(chunk)
        error = None
        try:
            text = lifter.feed(chunk, final=not chunk)
            if text:  # never empty before the end: ijson would take it for the end
                parser.send(text)
            if not chunk:
                parser.close()
        except ijson.JSONError as caught:
            error = caught
        # The tasks completed before an error still come first, as they would from ijson.items.
        for task in tasks:
            if isinstance(task, dict | list):  # a scalar holds no RLE
                lifter.restore(task)
            last = naming.name("task", naming.task_ref(count, task))
            count += 1
            yield task
        del tasks[:]
        if error is not None:
            raise SegassistError(_invalid_json(error, count, last, offset), file=file) from None
        if not chunk:
            return


def _invalid_json(error: Exception, count: int, last: str | None, offset: int) -> str:
    """ijson's error in one line, placed: after how many tasks (and which), at or before which byte."""
    where = f"invalid JSON after {naming.plural(count, 'task')}" + (f" ({last})" if last else "")
    lines = str(error).splitlines()  # yajl: the reason, then the text around the error and a pointer line
    if "premature EOF" in lines[0]:
        return f"{where}: the file is truncated, it stops at byte {offset} inside a value"
    near = f" near {lines[1].strip()!r}" if len(lines) > 1 and lines[1].strip() else ""
    return f"{where}, before byte {offset}: {lines[0]}{near}"


# -- reading: brush RLE lists lifted out of the JSON text ---------------------------------------------------
#
# A brush region's `value.rle` holds up to millions of small ints, and ijson builds one Python int per
# element: that was most of the reading time. So the text goes through `_lift_rle` on its way to ijson: each
# `"rle": [...]` list of plain JSON integers 0..255 is parsed there (into bytes) and replaced by a string
# token unique to this read; once ijson has built a task, `_RleLifter.restore` puts those bytes in place of
# the token, which `brush` decodes as they are (no list of Python ints is ever made). Everything else, invalid
# JSON included, reaches ijson unchanged.

_READ_BYTES = 1 << 20
_QUOTE, _BACKSLASH, _COLON, _COMMA, _OPEN, _CLOSE, _ZERO, _NINE = 34, 92, 58, 44, 91, 93, 48, 57
_RLE_KEY = (34, 114, 108, 101, 34)  # "rle", quotes included


@numba.njit(cache=True, nogil=True)
def _skip_space(text: np.ndarray, position: int) -> int:
    while position < text.size and (
        text[position] == 32 or text[position] == 10 or text[position] == 13 or text[position] == 9
    ):
        position += 1
    return position


@numba.njit(cache=True, nogil=True)
def _rle_list_start(text: np.ndarray, key: int) -> int:
    """Where the list opens when `text[key:]` is `"rle"` `:` `[`; -1 when it is not, -2 when the text ends
    before that is known."""
    for offset in range(5):
        if key + offset == text.size:
            return -2
        if text[key + offset] != _RLE_KEY[offset]:
            return -1
    position = _skip_space(text, key + 5)
    if position == text.size:
        return -2
    if text[position] != _COLON:
        return -1
    position = _skip_space(text, position + 1)
    if position == text.size:
        return -2
    return position if text[position] == _OPEN else -1


@numba.njit(cache=True, nogil=True)
def _is_space(byte: int) -> bool:
    return byte == 32 or byte == 10 or byte == 13 or byte == 9


@numba.njit(cache=True, nogil=True)
def _rle_list(text: np.ndarray, start: int, values: np.ndarray, used: int) -> tuple[int, int]:
    """Parse the list opening at `text[start]` into `values[used:]`: (end after `]`, count).

    The end is -1 when the list is not a non-empty list of JSON integers 0..255 (ijson reads it, or reports
    it), -2 when the text ends first. Positions are unsigned: numba then skips the negative-index checks.
    """
    size, one = np.uint64(text.size), np.uint64(1)
    position, count = np.uint64(start) + one, 0
    while True:
        while position < size and _is_space(text[position]):
            position += one
        if position == size:
            return -2, 0
        value = np.int64(text[position]) - _ZERO
        if value < 0 or value > 9:
            return -1, 0
        position += one
        while position < size:
            digit = np.int64(text[position]) - _ZERO
            if digit < 0 or digit > 9:
                break
            value = value * 10 + digit
            if value > 255 or value == digit:  # too large, or a leading zero (invalid JSON)
                return -1, 0
            position += one
        while position < size and _is_space(text[position]):
            position += one
        if position == size:
            return -2, 0
        values[used + count] = value
        count += 1
        if text[position] == _CLOSE:
            return np.int64(position) + 1, count
        if text[position] != _COMMA:
            return -1, 0
        position += one


@numba.njit(cache=True, nogil=True)
def _lift_rle(
    text: np.ndarray, in_string: int, final: bool, spans: np.ndarray, values: np.ndarray
) -> tuple[int, int, int]:
    """Find the `"rle": [ints]` lists in a piece of JSON text: (lists found, bytes done, string state after).

    `spans[i]` is (start of list i, its end, its first value in `values`, its count). The string state is 0
    outside a string, 1 inside, 2 after a backslash inside. Unless `final`, text from an `"rle"` key whose
    list is cut off at the end is left undone, for the caller to pass again with what follows.
    """
    found, used, position = 0, 0, 0
    while position < text.size:
        byte = text[position]
        if in_string == 2:
            in_string = 1
        elif in_string == 1:
            if byte == _BACKSLASH:
                in_string = 2
            elif byte == _QUOTE:
                in_string = 0
        elif byte == _QUOTE:
            start = _rle_list_start(text, position)
            end, count = -1, 0
            if start >= 0:
                end, count = _rle_list(text, start, values, used)
            if (start == -2 or end == -2) and not final:
                return found, position, 0
            if end >= 0:
                spans[found, 0], spans[found, 1], spans[found, 2], spans[found, 3] = start, end, used, count
                found += 1
                used += count
                position = end
                continue
            in_string = 1
        position += 1
    return found, position, in_string


class _RleLifter:
    """Lifts brush RLE lists out of the text fed to ijson, and puts them back into the tasks it builds."""

    def __init__(self) -> None:
        # A token no export contains: a random 128-bit tag.
        self.prefix = f"segassist-lifted-rle-{secrets.token_hex(16)}-"
        self.lifted: dict[str, bytes] = {}
        self.undone = b""
        self._in_string = 0
        self._serial = 0

    def feed(self, chunk: bytes, final: bool) -> bytes:
        """The text to give ijson for `chunk` (with what was left undone before it)."""
        text = self.undone + chunk
        spans = np.empty((len(text) // 9 + 1, 4), dtype=np.int64)
        values = np.empty(len(text) // 2 + 1, dtype=np.uint8)
        found, done, self._in_string = _lift_rle(
            np.frombuffer(text, dtype=np.uint8), self._in_string, final, spans, values
        )
        self.undone = text[done:]
        pieces, last = [], 0
        for start, end, first, count in spans[:found].tolist():
            token = f"{self.prefix}{self._serial}"
            self._serial += 1
            self.lifted[token] = values[first : first + count].tobytes()
            pieces += [text[last:start], b'"', token.encode(), b'"']
            last = end
        pieces.append(text[last:done])
        return b"".join(pieces)

    def restore(self, node: Any) -> None:
        """Put the lifted lists back, as bytes."""
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, dict | list):
                self.restore(value)
            elif key == "rle" and isinstance(value, str) and value in self.lifted:
                node[key] = self.lifted.pop(value)


def reference_file_name(reference: str) -> str:
    """The image's file name from a task's data URL (/data/upload/..., local-files ?d=..., http URLs)."""
    parts = urlsplit(reference)
    local = parse_qs(parts.query).get("d")
    path = local[0] if local else unquote(parts.path)
    return PurePosixPath(path).name or reference


def image_reference(root: str, file_name: str) -> str:
    """A task's image URL for `file_name` under `root`: a URL or path prefix (quoted into it), or Label
    Studio's local-files URL `/data/local-files/?d=DIR/` (appended to DIR), as LS's own COCO importer joins
    them (label_studio_sdk.converter.utils.join_input_url, which takes seconds to import)."""
    relative = file_name.replace("\\", "/").strip("/")
    parts = urlsplit(root)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.path.rstrip("/").endswith("/data/local-files") and any(key == "d" for key, _ in query):
        query = [
            (key, (f"{value.rstrip('/')}/{relative}" if value else relative) if key == "d" else value)
            for key, value in query
        ]
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote, safe="/")))
    path = quote(relative, safe="/")
    if parts.scheme or parts.netloc:
        return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{path}"))
    return f"{root.rstrip('/')}/{path}"


class LabelStudioSink:
    """Streams an importable task list into its reserved temporary file."""

    def __init__(self, output: Path, categories: list[Category], options: Options, outputs: Outputs) -> None:
        self.output = Path(output)
        self.renderer = LabelStudioRenderer.create(categories, options)
        self._handle = outputs.open(outputs.file(self.output), "wb")
        self._handle.write(b"[")
        self._count = 0

    def write(self, rendered: Rendered[bytes]) -> None:
        self._handle.write(b",\n" if self._count else b"\n")
        self._handle.write(rendered.payload)
        self._count += 1

    def finish(self) -> None:
        self._handle.write(b"\n]\n")
        self._handle.close()


class LabelStudioRenderer:
    """Turns one image into one task's JSON text (picklable; runs in worker processes)."""

    def __init__(
        self,
        labels: dict[int, str],
        control_type: str,
        from_name: str,
        to_name: str,
        image_key: str,
        writing: LabelStudioWriting,
    ) -> None:
        self.labels = labels
        self.control_type = control_type
        self.from_name = from_name
        self.to_name = to_name
        self.image_key = image_key
        self.options = writing

    @classmethod
    def create(cls, categories: list[Category], options: Options) -> LabelStudioRenderer:
        """Masks go to BrushLabels (PolygonLabels with `segmentation="polygon"`); with a labeling config,
        to its control of a type that fits (BrushLabels before BitmaskLabels before PolygonLabels, or the
        one `from_name` names), on the Image it labels; an error when the config has none."""
        wanted = "polygonlabels" if options.segmentation == "polygon" else None
        if options.label_config:
            config = read_label_config(options.label_config)
            try:
                control = config.output_control(wanted, options.from_name)
                image = config.target_image(control, options.to_name)
            except SegassistError as error:
                raise error.at(file=str(options.label_config)) from None
            control_type, from_name = control.tag, control.name
            to_name, image_key = image.name, image.value_key
        else:
            control_type, from_name = wanted or "brushlabels", options.from_name or DEFAULT_FROM_NAME
            to_name, image_key = options.to_name or DEFAULT_TO_NAME, DEFAULT_IMAGE_KEY
        return cls(
            labels={category.id: category.name for category in categories},
            control_type=control_type,
            from_name=from_name,
            to_name=to_name,
            image_key=image_key,
            writing=LabelStudioWriting.of(options),
        )

    def render(self, image: ImageRecord) -> Rendered[bytes]:
        """The task as JSON bytes (what the sink writes between the list's commas)."""
        results = []
        polygon_loss = []
        for segment in image.segments:
            result = segment_to_result(
                segment,
                from_name=self.from_name,
                to_name=self.to_name,
                control_type=self.control_type,
                label=self.labels[segment.category_id],
                polygon_tolerance=self.options.polygon_tolerance,
            )
            if self.control_type == "polygonlabels":
                written = polygons.ls_to_mask(result["value"]["points"], image.width, image.height)
                changed = written.area + segment.mask.area - 2 * written.intersection_area(segment.mask)
                if changed:
                    polygon_loss.append({"region_id": result["id"], "pixels_changed": changed})
            results.append(result)
        if self.options.write_predictions:
            scores = [segment.score for segment in image.segments if segment.score is not None]
            entry: dict[str, Any] = {"model_version": self.options.model_version, "result": results}
            if scores:
                entry["score"] = sum(scores) / len(scores)
            body = {"predictions": [entry]}
        else:
            body = {"annotations": [{"result": results, "ground_truth": False}]}
        data = image.extra.get("data") or {self.image_key: self._image_url(image.file_name)}
        task = {"data": data, **body}
        report = {"polygon_loss": polygon_loss} if polygon_loss else {}
        return Rendered(image_id=image.id, payload=dump_json(task), segments=len(results), report=report)

    def _image_url(self, file_name: str) -> str:
        root = self.options.image_root
        return image_reference(root, file_name) if root else file_name
