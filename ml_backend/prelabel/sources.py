"""Where the images come from: a folder, a Label Studio tasks JSON, or a Label Studio project.

A source yields `Item`s in a deterministic order. An item is small and picklable (it crosses to Ray workers);
`ImageLoader` turns it into pixels: folder files are decoded here (EXIF orientation applied, as the browser
shows the image in Label Studio), task references go through the backend's media module (local files,
Label Studio uploads with the token, allowed hosts only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from converters.errors import SegassistError
from ml_backend.media import MediaFetcher, decode_rgb
from ml_backend.settings import Settings

if TYPE_CHECKING:  # the SDK client: only the driver talks to Label Studio, not Ray workers
    from ml_backend.prelabel.project import LabelStudioProject

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Item:
    """One image to predict. `key` is unique and stable across runs (the journal's key)."""

    key: str
    index: int  # position in the source: output order and COCO image id (index + 1)
    task: dict[str, Any]  # the Label Studio task written to (or pushed for): id and data
    path: str | None = None  # the image file (folder source); else the image is the task's
    image_key: str = "image"  # the task data key holding the image (the label config's <Image value>)
    # model_version of every prediction the task already holds (the skip rule reads it).
    predicted_versions: tuple[str, ...] = ()
    where: dict[str, Any] = field(default_factory=dict)  # SegassistError location fields


class FolderSource:
    """Image files under `root`, recursively, in sorted relative-path order."""

    def __init__(self, root: Path, url_prefix: str = "") -> None:
        if not root.is_dir():
            raise SegassistError("the image folder does not exist", file=str(root))
        self.root = root
        self.description = f"folder {root.resolve()}"
        self._files = sorted(
            (path for path in root.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()),
            key=lambda path: path.relative_to(root).as_posix(),
        )
        if not self._files:
            raise SegassistError(
                f"the folder holds no images ({', '.join(IMAGE_SUFFIXES)}, searched recursively)",
                file=str(root),
            )
        self.count = len(self._files)
        self._url_prefix = url_prefix

    def items(self, image_key: str, model_version: str) -> Iterator[Item]:
        """`image_key`: the task data key the label config reads the image from (Label Studio output)."""
        for index, path in enumerate(self._files):
            relative = path.relative_to(self.root).as_posix()
            yield Item(
                key=relative,
                index=index,
                task={"data": {image_key: self._url_prefix + relative}},
                path=str(path),
                where={"file": str(path)},
            )


class TasksFileSource:
    """A Label Studio tasks JSON: a list of tasks whose `data` holds the image under `image_key`."""

    def __init__(self, path: Path) -> None:
        try:
            tasks = json.loads(path.read_bytes())
        except OSError as error:
            raise SegassistError(f"cannot read the tasks file: {error.strerror}", file=str(path)) from None
        except ValueError as error:
            raise SegassistError(f"the tasks file is not JSON: {error}", file=str(path)) from None
        if not isinstance(tasks, list) or not tasks:
            raise SegassistError("the tasks file must hold a non-empty list of tasks", file=str(path))
        ids = [task.get("id") for task in tasks if isinstance(task, dict) and task.get("id") is not None]
        if len(set(map(str, ids))) != len(ids):
            raise SegassistError("task ids must be unique: the run keeps its progress by id", file=str(path))
        self.description = f"tasks {path.resolve()}"
        self._path = path
        self._tasks = tasks
        self.count = len(tasks)

    def items(self, image_key: str, model_version: str) -> Iterator[Item]:
        for index, task in enumerate(self._tasks):
            task_id = task.get("id") if isinstance(task, dict) else None
            where = {"file": str(self._path), "task_id": task_id if task_id is not None else f"#{index + 1}"}
            yield Item(
                key=f"task {task_id}" if task_id is not None else f"#{index + 1}",
                index=index,
                # A task that is not an object fails when its image is loaded; the others go on.
                task=task if isinstance(task, dict) else {"data": None},
                image_key=image_key,
                predicted_versions=_versions(task.get("predictions") if isinstance(task, dict) else None),
                where=where,
            )


class ProjectSource:
    """The tasks of a Label Studio project, read page by page."""

    def __init__(self, project: LabelStudioProject) -> None:
        self.project = project
        self.description = f"project {project.id} at {project.url}"
        self.count = project.task_count

    def items(self, image_key: str, model_version: str) -> Iterator[Item]:
        for index, task in enumerate(self.project.tasks(model_version)):
            yield Item(
                key=f"task {task['id']}",
                index=index,
                task={"id": task["id"], "data": task["data"]},
                image_key=image_key,
                predicted_versions=(model_version,) if task["holds_version"] else (),
                where={"task_id": task["id"]},
            )


def _versions(predictions: Any) -> tuple[str, ...]:
    if not isinstance(predictions, list):
        return ()
    return tuple(
        str(p.get("model_version")) for p in predictions if isinstance(p, dict) and p.get("model_version")
    )


class ImageLoader:
    """Item -> (H, W, 3) uint8 RGB. Picklable: the media fetcher (a session, a lock) is rebuilt on arrival."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._media = MediaFetcher(settings)

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])

    def __call__(self, item: Item) -> np.ndarray:
        try:
            if item.path is None:
                return self._media.load_task(item.task, item.image_key)
            path = Path(item.path)
            if path.stat().st_size > self.settings.max_download_bytes:
                raise SegassistError(f"the file is larger than {self.settings.max_download_bytes} bytes")
            return decode_rgb(path.read_bytes(), self.settings.max_image_pixels)
        except OSError as error:
            raise SegassistError(f"cannot read the image: {error.strerror}", **item.where) from None
        except SegassistError as error:
            raise error.at(**item.where) from None
