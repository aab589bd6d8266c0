"""The Label Studio ML protocol as Label Studio 1.23 speaks it: /health, /setup, /predict, /webhook,
/versions.

The HTTP layer over the prediction service (`service.py`): it parses and checks requests, applies the
predict budget and writes the replies. Bad requests get a 4xx with a JSON `detail` (Label Studio shows it).
A task that fails for good (a 404, an image that does not decode) gets an empty prediction and a logged
reason, so Label Studio does not ask again; a task that fails for now (a timeout, a 5xx, a model fault) or
that the budget did not reach gets none (`[]`), so the next Retrieve Predictions sends it again. Optional HTTP
basic auth guards everything but /health.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from converters.errors import SegassistError
from ml_backend.labeling import LabelConfigInfo
from ml_backend.service import INTERACTIVE_STAGES, PredictionService, new_timings

log = logging.getLogger(__name__)

blueprint = Blueprint("protocol", __name__)
UNGUARDED = ("/", "/health")
# A task's result that holds no prediction at all: Label Studio saves nothing for it and asks again later.
NO_PREDICTION = b"[]"


def _service() -> PredictionService:
    return current_app.extensions["segassist"]


def _project_configs() -> dict[str, str]:
    """Label configs /setup sent, by project, for /predict requests that carry none."""
    return current_app.extensions["segassist.projects"]


def _fail(status: int, detail: str) -> Response:
    response = jsonify({"status": status, "detail": detail})
    response.status_code = status
    return response


@blueprint.before_app_request
def _basic_auth() -> Response | None:
    settings = _service().settings
    if settings.basic_auth_user is None or request.path in UNGUARDED:
        return None
    auth = request.authorization
    given_user = (auth.username or "") if auth and auth.type == "basic" else ""
    given_pass = (auth.password or "") if auth and auth.type == "basic" else ""
    # Compare both in constant time, always, so timing says nothing about which one was wrong.
    user_ok = hmac.compare_digest(given_user.encode(), settings.basic_auth_user.encode())
    pass_ok = hmac.compare_digest(given_pass.encode(), settings.basic_auth_pass.encode())
    if user_ok and pass_ok:
        return None
    response = _fail(401, "authentication required")
    response.headers["WWW-Authenticate"] = 'Basic realm="segassist"'
    return response


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise SegassistError("the request body must be a JSON object")
    return body


@blueprint.get("/")
@blueprint.get("/health")
def health() -> Response:
    # Reads only immutable attributes: never waits for a running prediction.
    service = _service()
    return jsonify(
        {
            "status": "UP",
            "model_class": "segassist",
            "engine": service.settings.engine,
            "model_version": service.model_version,
        }
    )


@blueprint.post("/setup")
def setup() -> Response:
    body = _json_body()
    service = _service()
    schema = body.get("schema")
    if schema is not None:
        if not isinstance(schema, str):
            raise SegassistError("schema must be the label config XML (a string)")
        service.label_config(schema)  # parses and logs unmapped classes now, not during a prediction
        if body.get("project") is not None:
            _project_configs()[str(body["project"])] = schema
    return jsonify({"model_version": service.model_version})


@blueprint.post("/predict")
def predict() -> Response:
    started = time.perf_counter()
    body = _json_body()
    service = _service()
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(task, dict) for task in tasks):
        raise SegassistError("tasks must be a non-empty list of task objects")
    label_config = body.get("label_config") or _project_configs().get(str(body.get("project")))
    if not isinstance(label_config, str):
        raise SegassistError("label_config is missing and /setup has not sent this project's config")
    info = service.label_config(label_config)
    load_image = service.media.task_loader(info.image.value_key)
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise SegassistError("params must be an object")
    context = (params or {}).get("context")
    if context in (None, {}):
        timings = new_timings()
        results = _predict_tasks(service, tasks, info, load_image, timings)
    else:
        if not isinstance(context, dict):
            raise SegassistError("params.context must be an object")
        if len(tasks) != 1:
            raise SegassistError(f"an interactive request holds one task, this one holds {len(tasks)}")
        timings = new_timings(INTERACTIVE_STAGES)
        results = [
            service.predict_interactive(tasks[0], context, info, load_image, timings=timings).prediction_json
        ]
    json_started = time.perf_counter()
    payload = b'{"results":[' + b",".join(results) + b"]}"
    timings["json"] += time.perf_counter() - json_started
    response = Response(payload, mimetype="application/json")
    # Stage times for clients and the benchmark: the standard Server-Timing header, in milliseconds.
    total = time.perf_counter() - started
    response.headers["Server-Timing"] = ", ".join(
        f"{stage};dur={seconds * 1000:.1f}" for stage, seconds in [*timings.items(), ("total", total)]
    )
    log.info(
        "predicted %d task(s) in %.2f s (%s)",
        len(tasks),
        total,
        ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in timings.items()),
    )
    return response


def _predict_tasks(
    service: PredictionService,
    tasks: list[dict],
    info: LabelConfigInfo,
    load_image: Callable[[dict], np.ndarray],
    timings: dict[str, float],
) -> list[bytes]:
    """Each task's prediction JSON, in order. Label Studio sends a whole selection in one request and gives
    up after ML_TIMEOUT_PREDICT (100 s): once the predict budget is spent (after at least one prediction), the
    tasks not reached get no prediction, so the next Retrieve Predictions sends only them."""
    budget = service.settings.predict_budget_s
    deadline = time.perf_counter() + budget if budget else math.inf
    results: list[bytes] = []
    predicted = 0
    with contextlib.closing(service.predict(tasks, load_image, info, timings=timings)) as stream:
        for result in stream:
            results.append(NO_PREDICTION if result.prediction_json is None else result.prediction_json)
            predicted += result.error is None
            if predicted and len(results) < len(tasks) and time.perf_counter() >= deadline:
                break
    left = len(tasks) - len(results)
    if left:
        log.warning(
            "the %g s predict budget (SEGASSIST_PREDICT_BUDGET) ran out after %d of %d tasks; the "
            "other %d get no prediction now: Retrieve Predictions again to continue",
            budget,
            len(results),
            len(tasks),
            left,
        )
    return results + [NO_PREDICTION] * left


@blueprint.post("/webhook")
def webhook() -> Response:
    # Label Studio sends every project event here; none triggers work, so answer at once.
    body = request.get_json(silent=True)
    action = body.get("action") if isinstance(body, dict) else None
    return jsonify({"status": "ignored", "action": action})


@blueprint.get("/versions")
def versions() -> Response:
    return jsonify({"versions": [_service().model_version]})


@blueprint.app_errorhandler(SegassistError)
def _bad_request(error: SegassistError) -> Response:
    log.warning("bad request to %s: %s", request.path, error)
    return _fail(400, str(error))


@blueprint.app_errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    return _fail(error.code or 500, error.description or error.name)


@blueprint.app_errorhandler(torch.cuda.OutOfMemoryError)
def _out_of_memory(error: torch.cuda.OutOfMemoryError) -> Response:
    log.error("CUDA out of memory even for a single image: %s", error)
    return _fail(503, "the GPU ran out of memory for a single image; try a smaller image or another device")
