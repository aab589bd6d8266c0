"""The one exception type for errors a user can cause, with the place where it happened."""

from __future__ import annotations

from converters import naming


class SegassistError(Exception):
    """A user-caused error (bad file, undecodable region, unknown label ...).

    The message names where the problem is: file, task, annotation and region when known, so a person can
    find and fix it. The CLI prints `str(error)` without a traceback and exits with `exit_code`.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        task_id: object = None,
        annotation_id: object = None,
        region_id: object = None,
        image_id: object = None,
    ) -> None:
        self.reason = message
        self.file = file
        self.task_id = task_id
        self.annotation_id = annotation_id
        self.region_id = region_id
        self.image_id = image_id
        super().__init__(self._render())

    def location(self) -> str:
        return naming.describe(
            file=self.file,
            image_id=self.image_id,
            task_id=self.task_id,
            annotation_id=self.annotation_id,
            region_id=self.region_id,
        )

    def _render(self) -> str:
        where = self.location()
        return f"{where}: {self.reason}" if where else self.reason

    def at(self, **where: object) -> SegassistError:
        """Fill in location fields that are still unknown (callers higher up know the file or task)."""
        for key, value in where.items():
            if getattr(self, key) is None and value is not None:
                setattr(self, key, value)
        self.args = (self._render(),)
        return self

    def __str__(self) -> str:
        return self._render()


class OutputError(SegassistError):
    """An output that cannot be written ("cannot write PATH: reason"): the command is unusable as given."""

    exit_code = 2
