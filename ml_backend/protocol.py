"""The Label Studio ML protocol as Label Studio 1.23 speaks it: /health, /setup, /predict, /webhook,
/versions.

Bad requests get a 4xx with a JSON `detail` (Label Studio shows it); a task that cannot be predicted gets an
empty prediction and a logged reason, so the other tasks of the request still count. Optional HTTP basic auth
guards everything but /health.
"""

from __future__ import annotations

import hmac
import logging
import time

import torch
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from converters.errors import SegassistError
from ml_backend import postprocess
from ml_backend.app import STAGES, Backend

log = logging.getLogger(__name__)

blueprint = Blueprint("protocol", __name__)
UNGUARDED = ("/", "/health")


def _backend() -> Backend:
    return current_app.extensions["segassist"]


def _fail(status: int, detail: str) -> Response:
    response = jsonify({"status": status, "detail": detail})
    response.status_code = status
    return response


@blueprint.before_app_request
def _basic_auth() -> Response | None:
    settings = _backend().settings
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
    backend = _backend()
    return jsonify(
        {
            "status": "UP",
            "model_class": "segassist",
            "engine": backend.settings.engine,
            "model_version": backend.model_version,
        }
    )


@blueprint.post("/setup")
def setup() -> Response:
    body = _json_body()
    backend = _backend()
    schema = body.get("schema")
    if schema is not None:
        if not isinstance(schema, str):
            raise SegassistError("schema must be the label config XML")
        backend.label_config(schema)  # parses and logs unmapped classes now, not during a prediction
        if body.get("project") is not None:
            backend.remember_project_config(body["project"], schema)
    return jsonify({"model_version": backend.model_version})


@blueprint.post("/predict")
def predict() -> Response:
    started = time.perf_counter()
    body = _json_body()
    backend = _backend()
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(task, dict) for task in tasks):
        raise SegassistError("tasks must be a non-empty list of task objects")
    label_config = body.get("label_config") or backend.project_config(body.get("project"))
    if not isinstance(label_config, str):
        raise SegassistError("label_config is missing and /setup has not sent this project's config")
    info = backend.label_config(label_config)
    params = body.get("params") if isinstance(body.get("params"), dict) else {}
    context = params.get("context")
    timings = dict.fromkeys(STAGES, 0.0)
    if context:
        if not isinstance(context, dict):
            raise SegassistError("params.context must be an object")
        results = [postprocess.prediction_json(backend.predict_interactive(tasks[0], context, info))]
    else:
        results = backend.predict_batch(tasks, info, timings)
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


@blueprint.post("/webhook")
def webhook() -> Response:
    # Label Studio sends every project event here; none triggers work, so answer at once.
    body = request.get_json(silent=True)
    action = body.get("action") if isinstance(body, dict) else None
    return jsonify({"status": "ignored", "action": action})


@blueprint.get("/versions")
def versions() -> Response:
    return jsonify({"versions": [_backend().model_version]})


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
