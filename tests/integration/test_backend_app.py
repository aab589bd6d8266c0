"""The Flask app end to end: requests shaped like Label Studio 1.23's, a real local HTTP server for media, the
real torchvision architectures (random weights loaded from files), label-studio-sdk's prediction validation
and RLE decoder as oracles."""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image, ImageDraw

from ml_backend.app import create_app
from ml_backend.service import STAGES
from ml_backend.settings import Settings
from tests.backend_support import (
    MediaServer,
    label_config,
    ls_task,
    png_bytes,
    predict_body,
    sample_image,
)

IMAGES = {f"/data/upload/1/{n}.png": sample_image(64 + 8 * n, 80, seed=n) for n in range(3)}
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SAM_CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<BrushLabels name="brush" toName="image"><Label value="Object"/></BrushLabels>'
    '<RectangleLabels name="box" toName="image" smart="true"><Label value="Object"/></RectangleLabels>'
    "</View>"
)


@pytest.fixture(scope="module")
def engine(random_torchvision_engine):
    return random_torchvision_engine


@pytest.fixture(scope="module")
def media():
    server = MediaServer()
    for path, image in IMAGES.items():
        server.routes[path] = (200, {"Content-Type": "image/png"}, png_bytes(image))
    server.routes["/data/upload/1/huge.png"] = (200, {}, png_bytes(np.zeros((300, 400, 3), np.uint8)))
    yield server
    server.close()


@pytest.fixture(scope="module")
def make_client(engine, media):
    def make(**settings: object):
        options = {"engine": "torchvision", "label_studio_url": media.url, "label_studio_api_key": "tok"}
        return create_app(Settings(**{**options, **settings}), engine=engine).test_client()

    return make


def add_slow_images(media, name: str, count: int, seconds: float) -> list[str]:
    """`count` image paths on the media server that each take `seconds` to download."""
    image = png_bytes(next(iter(IMAGES.values())))

    def slow_image(headers: dict) -> tuple[int, dict, bytes]:
        time.sleep(seconds)
        return 200, {"Content-Type": "image/png"}, image

    paths = [f"/data/upload/1/{name}-{index}.png" for index in range(count)]
    media.routes.update(dict.fromkeys(paths, slow_image))
    return paths


def _validate(config: str, prediction: dict) -> None:
    assert LabelInterface(config).validate_prediction(prediction, return_errors=True) == []


def _server_timing(response) -> dict[str, float]:
    """The Server-Timing header as {stage: milliseconds}, in the order sent."""
    stages = (part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))
    return {name: float(value) for name, value in stages}


def _brush_alpha(region: dict) -> np.ndarray:
    flat = decode_rle(region["value"]["rle"])
    return flat.reshape(region["original_height"], region["original_width"], 4)[..., 3]


def test_health_setup_versions_and_webhook(make_client) -> None:
    client = make_client(mode="instance")
    health = client.get("/health")
    assert health.status_code == 200 and health.json["status"] == "UP"
    setup = client.post(
        "/setup",
        json={
            "project": "1.1763719000",
            "schema": label_config(),
            "hostname": "http://localhost:8080",
            "access_token": "legacy",
            "extra_params": None,
        },
    )
    assert setup.status_code == 200
    version = setup.json["model_version"]
    assert version.endswith("-instance") and version == health.json["model_version"]
    assert client.get("/versions", json={"project": "1.1763719000"}).json == {"versions": [version]}
    assert client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 1}}).status_code == 200
    assert client.post("/webhook", data="not json").status_code == 200
    bad = client.post("/setup", json={"project": "1.1", "schema": "<View><Text name='t' value='$t'/></View>"})
    assert bad.status_code == 400 and "no <Image>" in bad.json["detail"]


def test_instance_predictions_are_valid_and_equal_the_engines_masks(make_client, engine) -> None:
    client = make_client(mode="instance", score_threshold=0.0)
    config = label_config("BrushLabels")
    paths = list(IMAGES)[:2]
    response = client.post(
        "/predict", json=predict_body([ls_task(i, p) for i, p in enumerate(paths)], config)
    )
    assert response.status_code == 200
    timing = response.headers["Server-Timing"]
    assert all(f"{stage};dur=" in timing for stage in (*STAGES, "total"))
    results = response.json["results"]
    assert len(results) == 2
    expected = engine.predict([IMAGES[p] for p in paths], "instance")
    names = {category.id: category.name for category in engine.categories}
    for prediction, segments in zip(results, expected, strict=True):
        _validate(config, prediction)
        assert prediction["model_version"] == client.get("/health").json["model_version"]
        regions = prediction["result"]
        assert len(regions) == len(segments) > 0
        by_score = sorted(segments, key=lambda s: -s.score)
        for region, segment in zip(regions, by_score, strict=True):
            assert region["value"]["brushlabels"] == [names[segment.category_id]]
            assert np.array_equal(_brush_alpha(region) > 0, segment.mask.dense())
            assert region["score"] == pytest.approx(segment.score)
        assert prediction["score"] == pytest.approx(np.mean([r["score"] for r in regions]))


@pytest.mark.parametrize("control", ["PolygonLabels", "RectangleLabels", "BitmaskLabels"])
def test_other_controls_get_their_own_region_type_and_follow_the_engines_masks(
    make_client, engine, control: str
) -> None:
    client = make_client(mode="instance", score_threshold=0.0)
    config = label_config(control)
    path = list(IMAGES)[0]
    response = client.post("/predict", json=predict_body([ls_task(1, path)], config))
    [prediction] = response.json["results"]
    assert prediction["result"] and all(r["type"] == control.lower() for r in prediction["result"])
    _validate(config, prediction)
    # Each region comes from the engine's segment with its score (a polygon too small to draw is skipped).
    by_score = {
        segment.score: segment.mask.dense() for segment in engine.predict([IMAGES[path]], "instance")[0]
    }
    for region in prediction["result"]:
        mask, value = by_score[region["score"]], region["value"]
        height, width = mask.shape
        if control == "RectangleLabels":
            rows, cols = np.nonzero(mask)
            box = (cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min())
            scale = (width, height, width, height)
            written = (value["x"], value["y"], value["width"], value["height"])
            assert written == pytest.approx([100 * v / s for v, s in zip(box, scale, strict=True)], abs=1e-5)
        elif control == "PolygonLabels":
            _assert_polygon_follows_largest_part(value["points"], mask)
        else:
            assert np.array_equal(_bitmask_alpha(value["imageDataURL"]) >= 128, mask)


def _bitmask_alpha(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGBA"))[
        ..., 3
    ]


def _assert_polygon_follows_largest_part(points: list[list[float]], mask: np.ndarray) -> None:
    """The polygon outlines the mask's largest part, holes filled (OpenCV's contours are the oracle): drawn
    back (pixel centres inside), it differs from that part only within 2 px of the part's outline, the
    simplification tolerance (1 px) plus the rounding of pixel-corner vertices."""
    height, width = mask.shape
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    part = np.zeros((height, width), np.uint8)
    cv2.drawContours(part, [max(contours, key=cv2.contourArea)], -1, 1, thickness=cv2.FILLED)
    corners = [(x * width / 100, y * height / 100) for x, y in points]
    drawn = Image.new("L", (width * 8, height * 8))
    # Drawn at 8x with vertices on pixel corners, then sampled at pixel centres.
    ImageDraw.Draw(drawn).polygon([(8 * x, 8 * y) for x, y in corners], fill=1)
    drawn = np.asarray(drawn)[4::8, 4::8].astype(bool)
    outline = part.astype(bool) ^ cv2.erode(part, np.ones((3, 3), np.uint8)).astype(bool)
    near_outline = cv2.dilate(outline.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert not ((drawn ^ part.astype(bool)) & ~near_outline).any()
    assert (drawn & part.astype(bool)).sum() > 0.5 * part.sum()


def test_semantic_mode_writes_one_region_per_label_with_the_engines_pixels(make_client, engine) -> None:
    client = make_client(mode="semantic", score_threshold=0.0)
    config = label_config()
    path = list(IMAGES)[1]
    [prediction] = client.post("/predict", json=predict_body([ls_task(1, path)], config)).json["results"]
    labels = [r["value"]["brushlabels"][0] for r in prediction["result"]]
    assert labels and len(labels) == len(set(labels))
    _validate(config, prediction)
    # The regions paint the engine's semantic map: each label's pixels, nothing more, nothing less.
    names = {category.id: category.name for category in engine.categories}
    expected = {names[s.category_id]: s.mask.dense() for s in engine.predict([IMAGES[path]], "semantic")[0]}
    assert sorted(labels) == sorted(expected)
    for region in prediction["result"]:
        assert np.array_equal(_brush_alpha(region) > 0, expected[region["value"]["brushlabels"][0]])


def test_panoptic_regions_never_overlap(make_client) -> None:
    client = make_client(mode="panoptic", score_threshold=0.0)
    config = label_config()
    [prediction] = client.post("/predict", json=predict_body([ls_task(1, list(IMAGES)[2])], config)).json[
        "results"
    ]
    _validate(config, prediction)
    taken = None
    for region in prediction["result"]:
        alpha = _brush_alpha(region) > 0
        taken = np.zeros_like(alpha) if taken is None else taken
        assert not (taken & alpha).any()
        taken |= alpha
    assert taken is not None


def test_a_failing_task_gets_an_empty_prediction_and_the_others_are_predicted(
    make_client, media, caplog
) -> None:
    client = make_client(mode="instance", score_threshold=0.0, max_image_pixels=100_000)
    config = label_config()
    before = len(media.requests)
    tasks = [
        ls_task(1, "/data/upload/1/missing.png"),
        ls_task(2, "/data/upload/1/huge.png"),
        ls_task(3, "http://169.254.169.254/latest/meta-data/"),
        {**ls_task(4, ""), "data": {"text": "no image"}},
        ls_task(5, list(IMAGES)[0]),
        {**ls_task(6, ""), "data": {"$undefined$": list(IMAGES)[0]}},
    ]
    response = client.post("/predict", json=predict_body(tasks, config))
    assert response.status_code == 200
    results = response.json["results"]
    assert [bool(r["result"]) for r in results] == [False, False, False, False, True, True]
    assert all(r["model_version"] == results[4]["model_version"] for r in results)
    log = caplog.text
    assert "task 1" in log and "HTTP 404" in log
    assert "task 2" in log and "over the limit" in log
    assert "task 3" in log and "SEGASSIST_ALLOWED_HOSTS" in log
    assert "task 4" in log and "no 'image'" in log
    assert "169.254" not in "".join(path for path, _ in media.requests[before:])


def test_a_spent_predict_budget_leaves_the_remaining_tasks_without_a_prediction(make_client, media, caplog):
    paths = add_slow_images(media, "budget", count=8, seconds=0.3)
    tasks = [ls_task(0, "/data/upload/1/missing.png"), *(ls_task(i, path) for i, path in enumerate(paths, 1))]
    config = label_config()
    started = time.perf_counter()
    response = make_client(mode="instance", predict_budget_s=0.5, batch_size=1).post(
        "/predict", json=predict_body(tasks, config)
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    results = response.json["results"]
    assert len(results) == len(tasks)
    # A failed task keeps its empty prediction; a task the budget did not reach gets none (an empty list), so
    # Label Studio saves nothing for it and sends it again with the next Retrieve Predictions.
    assert results[0]["result"] == []
    done = [index for index, result in enumerate(results[1:], start=1) if isinstance(result, dict)]
    assert done == list(range(1, len(done) + 1)) and 1 <= len(done) < len(paths)
    assert all(result == [] for result in results[len(done) + 1 :])
    for result in results[1 : len(done) + 1]:
        _validate(config, result)
    assert elapsed < 0.5 + 8 * 0.3
    assert f"ran out after {len(done) + 1} of {len(tasks)} tasks" in caplog.text
    rest = [task for task, result in zip(tasks, results, strict=True) if result == []]
    again = make_client(mode="instance", predict_budget_s=0).post("/predict", json=predict_body(rest, config))
    assert all(isinstance(result, dict) for result in again.json["results"])


def test_unmapped_labels_give_empty_predictions(make_client) -> None:
    client = make_client(mode="instance")
    config = label_config(labels=["Nothing", "Matches"])
    response = client.post("/predict", json=predict_body([ls_task(1, list(IMAGES)[0])], config))
    assert response.status_code == 200 and response.json["results"][0]["result"] == []


@pytest.mark.parametrize(
    "body, status, detail",
    [
        ("{not json", 400, "JSON object"),
        ("[1, 2]", 400, "JSON object"),
        (json.dumps({"tasks": []}), 400, "non-empty list"),
        (json.dumps({"tasks": [1]}), 400, "non-empty list"),
        (json.dumps({"tasks": [{"id": 1, "data": {}}], "project": "9.1"}), 400, "label_config is missing"),
        (json.dumps(predict_body([{"id": 1}], "<View>")), 400, "does not parse"),
        (json.dumps(predict_body([{"id": 1}], label_config(), context={"result": []})), 400, "interactive"),
    ],
)
def test_bad_requests_get_4xx_with_a_reason(make_client, body: str, status: int, detail: str) -> None:
    response = make_client().post("/predict", data=body, content_type="application/json")
    assert response.status_code == status
    assert detail in response.json["detail"]


def test_predict_uses_the_config_from_setup_when_label_config_is_absent(make_client) -> None:
    client = make_client(mode="instance", score_threshold=0.0)
    client.post("/setup", json={"project": "7.1", "schema": label_config()})
    response = client.post("/predict", json={"tasks": [ls_task(1, list(IMAGES)[0])], "project": "7.1"})
    assert response.status_code == 200 and response.json["results"][0]["result"]


def test_request_size_limit_and_unknown_routes(make_client) -> None:
    client = make_client(max_request_bytes=1000)
    assert client.post("/predict", data="x" * 2000, content_type="application/json").status_code == 413
    assert client.get("/nothing").status_code == 404
    assert client.get("/predict").status_code == 405


def test_basic_auth_guards_everything_but_health(make_client) -> None:
    client = make_client(basic_auth_user="ls", basic_auth_pass="s3cret")

    def auth(user: str, password: str) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    assert client.get("/health").status_code == 200
    denied = client.post("/setup", json={})
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    assert client.post("/setup", json={}, headers=auth("ls", "wrong")).status_code == 401
    assert client.get("/versions", headers=auth("other", "s3cret")).status_code == 401
    assert client.post("/setup", json={}, headers=auth("ls", "s3cret")).status_code == 200
    assert client.post("/webhook", json={}, headers=auth("ls", "s3cret")).status_code == 200


def test_interactive_requests_go_to_the_sam_handler(media, litemedsam) -> None:
    app = create_app(Settings(label_studio_url=media.url), engine=litemedsam)
    client = app.test_client()
    config = SAM_CONFIG
    context = {
        "result": [
            {
                "id": "r1",
                "from_name": "box",
                "to_name": "image",
                "type": "rectanglelabels",
                "origin": "manual",
                "original_width": 80,
                "original_height": 64,
                "image_rotation": 0,
                # around the red disc of sample_image
                "value": {
                    "x": 10,
                    "y": 20,
                    "width": 50,
                    "height": 60,
                    "rotation": 0,
                    "rectanglelabels": ["Object"],
                },
            }
        ]
    }
    response = client.post(
        "/predict", json=predict_body([ls_task(1, list(IMAGES)[0])], config, context=context)
    )
    assert response.status_code == 200
    [prediction] = response.json["results"]
    assert prediction["model_version"] == client.get("/health").json["model_version"]
    [region] = prediction["result"]
    assert region["from_name"] == "brush" and region["value"]["brushlabels"] == ["Object"]
    _validate(config, prediction)
    # The stages an interactive request has, with their real times (the model's is never 0 for a SAM decode).
    timing = _server_timing(response)
    assert list(timing) == ["media", "model", "json", "total"]
    assert timing["model"] > 0 and timing["total"] >= timing["media"] + timing["model"] + timing["json"] - 0.2
    # The README shows the model_version the backend sends.
    assert f"`{prediction['model_version']}`" in README.read_text()


def test_temporary_image_failures_get_no_prediction_and_lasting_ones_an_empty_one(make_client, media) -> None:
    [slow] = add_slow_images(media, "timeout", count=1, seconds=1.0)
    media.routes["/data/upload/1/busy.png"] = (503, {}, b"busy")
    media.routes["/data/upload/1/note.png"] = (200, {"Content-Type": "text/plain"}, b"not an image")
    client = make_client(mode="instance", score_threshold=0.0, media_timeout_s=0.3)
    paths = ["/data/upload/1/busy.png", slow, "/data/upload/1/missing.png", "/data/upload/1/note.png"]
    tasks = [ls_task(i, path) for i, path in enumerate([*paths, list(IMAGES)[0]])]
    response = client.post("/predict", json=predict_body(tasks, label_config()))
    assert response.status_code == 200
    busy, timed_out, missing, undecodable, good = response.json["results"]
    # 503 and a timeout: no prediction, so Label Studio asks again; 404 and undecodable: an empty one, final.
    assert busy == [] and timed_out == []
    version = client.get("/health").json["model_version"]
    assert missing == undecodable == {"result": [], "score": 0.0, "model_version": version}
    assert good["result"]


def test_an_engine_fault_on_one_task_leaves_the_others_predicted(make_client, media) -> None:
    # A 1x1000 image makes Mask R-CNN's resize fail with a RuntimeError (not a SegassistError) while the other
    # images of the request are in flight in the CPU workers.
    media.routes["/data/upload/1/thin.png"] = (200, {}, png_bytes(np.zeros((1, 1000, 3), np.uint8)))
    client = make_client(mode="instance", score_threshold=0.0)
    paths = [list(IMAGES)[0], "/data/upload/1/thin.png", list(IMAGES)[1], list(IMAGES)[2]]
    response = client.post(
        "/predict", json=predict_body([ls_task(i, p) for i, p in enumerate(paths)], label_config())
    )
    assert response.status_code == 200
    first, thin, *rest = response.json["results"]
    assert thin == []
    assert all(prediction["result"] for prediction in (first, *rest))


@pytest.mark.parametrize("schema", [{"xml": "<View/>"}, ["<View/>"], 5])
def test_a_setup_schema_that_is_not_a_string_is_a_400(make_client, schema) -> None:
    response = make_client().post("/setup", json={"project": "1.1", "schema": schema})
    assert response.status_code == 400 and "schema must be the label config XML" in response.json["detail"]


@pytest.mark.parametrize("context", ["click", [1, 2], 5, True])
def test_a_context_that_is_not_an_object_is_a_400(make_client, context) -> None:
    body = predict_body([ls_task(1, list(IMAGES)[0])], label_config(), context=context)
    response = make_client().post("/predict", json=body)
    assert response.status_code == 400 and "params.context must be an object" in response.json["detail"]
    body["params"] = "context"
    response = make_client().post("/predict", json=body)
    assert response.status_code == 400 and "params must be an object" in response.json["detail"]


def test_an_interactive_request_with_several_tasks_is_a_400(media, litemedsam) -> None:
    client = create_app(Settings(label_studio_url=media.url), engine=litemedsam).test_client()
    context = {"result": [_sam_box({"x": 10, "y": 20, "width": 50, "height": 60})]}
    tasks = [ls_task(1, list(IMAGES)[0]), ls_task(2, list(IMAGES)[1])]
    response = client.post("/predict", json=predict_body(tasks, SAM_CONFIG, context=context))
    assert response.status_code == 400 and "holds one task, this one holds 2" in response.json["detail"]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1e999"])
def test_nan_and_infinite_prompt_coordinates_are_a_400_naming_the_region(media, litemedsam, bad) -> None:
    client = create_app(Settings(label_studio_url=media.url), engine=litemedsam).test_client()
    for value in (
        {"x": 10, "y": 20, "width": bad, "height": 60},
        {"x": bad, "y": 20, "width": 50, "height": 60},
        {"x": 10, "y": 20, "width": 50, "height": 60, "rotation": bad},
    ):
        body = predict_body([ls_task(1, list(IMAGES)[0])], SAM_CONFIG, context={"result": [_sam_box(value)]})
        # Python's JSON writes NaN and Infinity as bare words, as some clients do; 1e999 parses as infinity.
        text = json.dumps(body).replace('"1e999"', "1e999")
        response = client.post("/predict", data=text, content_type="application/json")
        assert response.status_code == 400, response.get_data(as_text=True)
        assert "region r1" in response.json["detail"] and "no usable coordinates" in response.json["detail"]


def _sam_box(value: dict) -> dict:
    return {
        "id": "r1",
        "from_name": "box",
        "to_name": "image",
        "type": "rectanglelabels",
        "value": {**value, "rectanglelabels": ["Object"]},
    }


# Label Studio's health check times out after 1 s; the backend's target is 100 ms while it predicts. The
# margin, for a shared 2-core test machine whose load can deschedule any process for a moment: the median
# probe within the target, and 18 of the 20 probes within twice the target.
HEALTH_TARGET_S = 0.1
HEALTH_MARGIN = 2.0


@pytest.mark.slow
def test_health_answers_fast_while_a_long_predict_runs_under_gunicorn(
    random_torchvision_weights, media, tmp_path
):
    # The production server: gunicorn as `segassist serve` runs it, with the random-weight test engine.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    instance, semantic = random_torchvision_weights
    script = f"""
from ml_backend.app import create_app
from ml_backend.cli import run_server
from ml_backend.settings import Settings
from tests.backend_support import load_test_engine

settings = Settings(
    engine="torchvision", port={port}, label_studio_url={media.url!r}, mode="panoptic", batch_size=1,
    predict_budget_s=30,
)
engine = lambda: load_test_engine({str(instance)!r}, {str(semantic)!r})  # noqa: E731
run_server(settings, lambda: create_app(settings, engine=engine()))
"""
    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
            try:
                requests.get(f"{base}/health", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.5)
        # Images that take 0.25 s each to download keep the predict busy past the 20 probes on any machine.
        paths = add_slow_images(media, "slow", count=24, seconds=0.25)
        tasks = [ls_task(i, path) for i, path in enumerate(paths)]
        outcome: dict = {}

        def long_predict() -> None:
            outcome["response"] = requests.post(
                f"{base}/predict", json=predict_body(tasks, label_config()), timeout=300
            )

        worker = threading.Thread(target=long_predict)
        worker.start()
        time.sleep(0.5)
        latencies = []
        while worker.is_alive() and len(latencies) < 20:
            started = time.perf_counter()
            assert requests.get(f"{base}/health", timeout=5).status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.1)
        assert worker.is_alive(), "the predict finished before /health was probed enough"
        worker.join()
        assert outcome["response"].status_code == 200
        assert len(outcome["response"].json()["results"]) == len(tasks)
        assert len(latencies) == 20
        assert statistics.median(latencies) < HEALTH_TARGET_S, latencies
        within_margin = [latency < HEALTH_TARGET_S * HEALTH_MARGIN for latency in latencies]
        assert sum(within_margin) >= 18, [round(latency, 3) for latency in latencies]
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
