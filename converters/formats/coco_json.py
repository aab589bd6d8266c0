"""What the COCO instance and COCO panoptic formats share: the JSON document (read once, its shape kept for
QA), image entries, iscrowd values, the category list, and the closing of a streamed COCO file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.errors import SegassistError
from converters.formats.common import category_from_dict, category_to_dict, check_categories
from converters.io import JsonArrayWriter, parse_json
from converters.model import Category

_TRUE_STRINGS = {"1", "true", "yes"}
_FALSE_STRINGS = {"0", "false", "no", ""}


def load_json(path: Path) -> Any:
    """The whole JSON document of a file; a file that cannot be read or parsed is a SegassistError."""
    try:
        return parse_json(Path(path).read_bytes())
    except OSError as error:
        reason = error.strerror or error
        raise SegassistError(f"cannot read the JSON file: {reason}", file=str(path)) from None
    except ValueError as error:
        raise SegassistError(f"cannot read the JSON file: {error}", file=str(path)) from None


COCO_LISTS = ("images", "annotations", "categories")


@dataclass
class CocoDocument:
    """A COCO (instance or panoptic) file as read: its three lists, each holding only the entries that are
    objects, and what is wrong with its shape, by list name ("" for the top level). QA reports the shape
    problems; a reader refuses a file with one, except for a list the file leaves out (it reads as empty)."""

    path: Path
    data: dict[str, Any]
    images: list[dict[str, Any]]
    annotations: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    problems: dict[str, str] = field(default_factory=dict)

    def check_shape(self) -> None:
        """Raise the first shape problem that is not a missing list."""
        for key, problem in self.problems.items():
            if key == "" or key in self.data:
                raise SegassistError(problem, file=str(self.path))


def read_document(path: Path) -> CocoDocument:
    """The one read of a COCO (instance or panoptic) JSON file."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        problem = "the top level must be an object with images, annotations and categories"
        return CocoDocument(path, {}, [], [], [], {"": problem})
    lists, problems = [], {}
    for key in COCO_LISTS:
        value = data.get(key)
        if not isinstance(value, list):
            problems[key] = f"{key!r} must be a list, got {type(value).__name__}"
            value = []
        objects = [item for item in value if isinstance(item, dict)]
        if len(objects) != len(value):
            problems.setdefault(key, f"{len(value) - len(objects)} entries of {key!r} are not objects")
        lists.append(objects)
    return CocoDocument(path, data, *lists, problems=problems)


def parse_iscrowd(value: Any) -> bool:
    """0/1, booleans, and the strings some exporters write ("false", "1")."""
    if isinstance(value, bool | int):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_STRINGS | _FALSE_STRINGS:
        return value.strip().lower() in _TRUE_STRINGS
    raise SegassistError(f"iscrowd must be 0 or 1, got {value!r}")


def image_entry(data: dict[str, Any], file: str) -> tuple[int, str, int, int]:
    """(id, file_name, width, height) of a COCO `images` entry."""
    try:
        return int(data["id"]), str(data["file_name"]), int(data["width"]), int(data["height"])
    except (KeyError, TypeError, ValueError) as error:
        raise SegassistError(
            f"image entry lacks a valid {error}", file=file, image_id=data.get("id")
        ) from None


def read_categories(document: CocoDocument) -> list[Category]:
    """The `categories` of a COCO (instance or panoptic) file, checked."""
    path = document.path
    try:
        categories = [category_from_dict(entry) for entry in document.categories]
    except (KeyError, TypeError, ValueError) as error:
        raise SegassistError(f"invalid category entry: {error!r}", file=str(path)) from None
    check_categories(categories, str(path))
    return categories


def finish_coco_json(json_file: JsonArrayWriter, categories: list[Category]) -> None:
    """Close a COCO (instance or panoptic) file: its info and categories around the streamed arrays."""
    fields = {
        "info": {"description": "written by segassist"},
        "categories": [category_to_dict(category) for category in categories],
    }
    json_file.finish(fields, ("info", "images", "annotations", "categories"))
