"""One way to name a place in a dataset (file, image, task, annotation, region, segment) in every message.

Readers, convert's errors and QA's findings all name things through these functions, so a task without an id
is `task #1` everywhere (positions count from 1), and a label is never doubled.
"""

from __future__ import annotations

from typing import Any

# The order in which a location's parts are named, with the word that names each.
LOCATION_PARTS = (
    ("file", "file"),
    ("image_id", "image"),
    ("task_id", "task"),
    ("annotation_id", "annotation"),
    ("region_id", "region"),
    ("segment_id", "segment"),
)
# Entries of a task that are not annotations but are numbered like them (their refs carry their own word).
_SELF_NAMED = ("prediction #",)


def position_ref(position: int) -> str:
    """The name of an entry that has no id, from its 0-based position: `#1` for the first."""
    return f"#{position + 1}"


def task_ref(position: int, task: Any) -> Any:
    """A Label Studio task's id, or `#n` (its position from 1) for tasks without one, as import files have."""
    task_id = task.get("id") if isinstance(task, dict) else None
    return position_ref(position) if task_id is None else task_id


def annotation_ref(kind: str, position: int, entry: Any) -> Any:
    """An annotation's (or prediction's) id, else `#n` for an annotation and `prediction #n` for a
    prediction (positions from 1 within the task)."""
    entry_id = entry.get("id") if isinstance(entry, dict) else None
    if entry_id is not None:
        return entry_id
    return position_ref(position) if kind == "annotation" else f"{kind} {position_ref(position)}"


def name(label: str, value: Any) -> str:
    """`task 7`, `task #1`, `annotation 11`; a ref that already names its kind (`prediction #2`) as it is."""
    text = str(value)
    return text if text.startswith(_SELF_NAMED) else f"{label} {text}"


def describe(**where: Any) -> str:
    """The location fields that are set, named in the one order: `file x.json, task #1, region r1`.

    Keys are those of `LOCATION_PARTS`; a `file_name` next to an image is added in brackets.
    """
    parts = []
    for key, label in LOCATION_PARTS:
        value = where.get(key)
        if value is None:
            continue
        part = name(label, value)
        if key == "image_id" and where.get("file_name"):
            part += f" ({where['file_name']})"
        parts.append(part)
    return ", ".join(parts)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 item`, `2 items`, `0 items` (`nouns` for irregular plurals)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
