"""A Label Studio project through label-studio-sdk: its config, its tasks page by page, and predictions.

The SDK client handles both token kinds (a Personal Access Token is exchanged for short-lived access
tokens; a legacy token is sent as `Token`). Every API failure becomes a SegassistError that names the
project and the problem, never the token.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

# The SDK's generated client: the `LabelStudio` subclass adds export helpers that import pandas (half a
# second of every run's start) and nothing this module calls.
from label_studio_sdk.base_client import LabelStudioBase
from label_studio_sdk.core.api_error import ApiError

from converters.errors import SegassistError

PAGE_SIZE = 100


class LabelStudioProject:
    def __init__(
        self, url: str | None, api_key: str | None, project_id: int, timeout_s: float = 60.0
    ) -> None:
        if not url:
            raise SegassistError("--project needs LABEL_STUDIO_URL (with http://) in the environment")
        if not api_key:
            raise SegassistError(
                "--project needs LABEL_STUDIO_API_KEY (a Personal Access Token) in the environment"
            )
        self.url = url.rstrip("/")
        self.id = project_id
        self._client = LabelStudioBase(base_url=self.url, api_key=api_key, timeout=timeout_s)
        project = self._call("read the project", lambda: self._client.projects.get(id=project_id))
        self.label_config: str = project.label_config or ""
        self.task_count: int | None = project.task_number

    def _call(self, doing: str, call: Any) -> Any:
        try:
            return call()
        except (ApiError, httpx.HTTPError, OSError) as error:
            raise self._failure(doing, error) from None

    def _failure(self, doing: str, error: Exception) -> SegassistError:
        if not isinstance(error, ApiError):
            return SegassistError(
                f"cannot {doing}: Label Studio at {self.url} is unreachable ({type(error).__name__})"
            )
        status = error.status_code
        if status == 401:
            problem = "LABEL_STUDIO_API_KEY was refused (401): the token is wrong, expired or revoked"
        elif status == 403:
            problem = "the token's user may not access this project (403)"
        elif status == 404:
            problem = f"project {self.id} does not exist at {self.url} (404)"
        else:
            problem = f"Label Studio answered HTTP {status}: {str(error.body)[:200]}"
        return SegassistError(f"cannot {doing}: {problem}")

    def tasks(self, model_version: str) -> Iterator[dict[str, Any]]:
        """Every task as {id, data, holds_version}, a page at a time; `holds_version`: the task holds a
        prediction of `model_version` (the skip rule)."""
        holding = {
            task.id
            for task in self._pages(self._holding_filter(model_version))
            if model_version in _version_list(task.predictions_model_versions)
        }
        for task in self._pages(None):
            yield {"id": task.id, "data": dict(task.data or {}), "holds_version": task.id in holding}

    @staticmethod
    def _holding_filter(model_version: str) -> str:
        """Label Studio's own Data Manager filter for tasks with a prediction of this version. It matches
        substrings, so callers check the versions it returns (a filtered field is returned with the task)."""
        item = {
            "filter": "filter:tasks:predictions_model_versions",
            "operator": "contains",
            "type": "List",
            "value": [model_version],
        }
        return json.dumps({"filters": {"conjunction": "and", "items": [item]}})

    def _pages(self, query: str | None) -> Iterator[Any]:
        seen: set[int] = set()  # a filter across predictions can repeat a task
        for page in itertools.count(1):
            try:
                response = self._client.tasks.list(
                    project=self.id, page=page, page_size=PAGE_SIZE, fields="task_only", query=query
                )
            except (ApiError, httpx.HTTPError, OSError) as error:
                if isinstance(error, ApiError) and error.status_code == 404 and page > 1:
                    return  # Label Studio answers 404 for the page after the last
                raise self._failure(f"list the tasks of project {self.id}", error) from None
            tasks = list(response.items or [])
            for task in tasks:
                if task.id not in seen:
                    seen.add(task.id)
                    yield task
            if len(tasks) < PAGE_SIZE:
                return

    def import_predictions(self, predictions: Sequence[dict[str, Any]]) -> None:
        """Create predictions ({task, result, score, model_version}) in one request."""
        self._call(
            f"import {len(predictions)} predictions into project {self.id}",
            lambda: self._client.projects.import_predictions(id=self.id, request=list(predictions)),
        )

    def delete_predictions(self, task_id: int, model_version: str) -> int:
        """Delete the task's predictions made by `model_version`; how many there were."""
        existing = self._call(
            f"list the predictions of task {task_id}", lambda: self._client.predictions.list(task=task_id)
        )
        doomed = [p.id for p in existing if p.model_version == model_version]
        for prediction_id in doomed:
            self._call(
                f"delete prediction {prediction_id} of task {task_id}",
                lambda prediction_id=prediction_id: self._client.predictions.delete(id=prediction_id),
            )
        return len(doomed)


def _version_list(value: Any) -> list[str]:
    """The API gives a list, or one string with the versions joined by commas."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value or ()]
