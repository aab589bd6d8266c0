"""Shared pieces for the backend tests: real torchvision architectures with random weights saved to files, a
real local HTTP server standing in for Label Studio, and requests shaped like those of Label Studio 1.23."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.models import detection, segmentation

from ml_backend.engines import torchvision_engine

# Small inputs and few proposals keep random-weight Mask R-CNN to about a second per image on 2 cores.
FAST_OPTIONS = {
    "min_size": 96,
    "max_size": 128,
    "rpn_pre_nms_top_n_test": 60,
    "rpn_post_nms_top_n_test": 30,
    "box_detections_per_img": 8,
    "semantic_size": 64,
    "stuff_area_threshold": 16,
}
COCO_NAMES = [
    n
    for n in detection.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1.meta["categories"]
    if n not in ("N/A", "__background__")
]
VOC_NAMES = segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.meta["categories"][1:]


def save_random_weights(folder: Path) -> tuple[Path, Path]:
    """Mask R-CNN v2 (COCO's 91 classes) and DeepLabV3-MobileNet (VOC's 21) with seeded random weights."""
    torch.manual_seed(0)
    instance = folder / "maskrcnn.pth"
    semantic = folder / "deeplab.pth"
    torch.save(detection.maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), instance)
    torch.save(
        segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, aux_loss=True
        ).state_dict(),
        semantic,
    )
    return instance, semantic


def save_random_semantic_weights(arch: str, path: Path) -> None:
    """A torchvision semantic architecture with random weights, auxiliary head included as in torchvision's
    checkpoints, and logits shaped like a trained model's: a random classifier bias picks one class for
    every pixel and the random features give logits of ~1e-10, so the bias is zeroed and the classifier
    scaled to logits of unit spread. The maps then have several classes, with borders (the session's
    weights above keep the random bias: one class everywhere, which the panoptic tests use as stuff)."""
    model = getattr(segmentation, arch)(weights=None, weights_backbone=None, aux_loss=True).eval()
    classifier = model.classifier[-1]
    with torch.no_grad():
        classifier.bias.zero_()
        image = torch.from_numpy(sample_image(64, 80)).permute(2, 0, 1).float()[None] / 255
        classifier.weight /= model(image)["out"].std()
    torch.save(model.state_dict(), path)


def load_test_engine(instance: Path | None, semantic: Path | None, **options: object):
    spec = ",".join(
        part
        for part in (
            f"maskrcnn_resnet50_fpn_v2={instance}" if instance else "",
            f"deeplabv3_mobilenet_v3_large={semantic}" if semantic else "",
        )
        if part
    )
    return torchvision_engine.load(spec, torch.device("cpu"), **{**FAST_OPTIONS, **options})


def png_bytes(array: np.ndarray, **save_options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", **save_options)
    return out.getvalue()


def sample_image(height: int = 72, width: int = 96, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: smooth shapes with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], axis=2)
    image[(yy - height // 2) ** 2 + (xx - width // 3) ** 2 < (height // 4) ** 2] = (200, 40, 40)
    return np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)


Route = tuple[int, dict[str, str], bytes]


class MediaServer:
    """A real HTTP server on 127.0.0.1: `routes` maps a path (with query) to (status, headers, body) or to a
    function of the request headers returning that; every request's path and headers are recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[dict[str, str]], Route]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                headers = dict(self.headers.items())
                length = int(headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append((self.path, headers))
                route = server.routes.get(self.path, (404, {}, b"not found"))
                status, extra, payload = (
                    route(headers | {"_body": body.decode()}) if callable(route) else route
                )
                try:
                    self.send_response(status)
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a download timeout under test)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def ls_task(task_id: int, image: str, data_key: str = "image") -> dict:
    """A task as Label Studio 1.23's TaskSimpleSerializer sends it to /predict."""
    return {
        "id": task_id,
        "data": {data_key: image},
        "meta": {},
        "created_at": "2026-11-21T10:00:00.000000Z",
        "updated_at": "2026-11-21T10:00:00.000000Z",
        "is_labeled": False,
        "overlap": 1,
        "inner_id": task_id,
        "total_annotations": 0,
        "cancelled_annotations": 0,
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 1,
        "updated_by": None,
        "file_upload": 1,
        "comment_authors": [],
        "annotations": [],
        "predictions": [],
        "drafts": [],
    }


def predict_body(tasks: list[dict], label_config: str, context: dict | None = None) -> dict:
    return {
        "tasks": tasks,
        "project": "1.1763719000",
        "label_config": label_config,
        "params": {"login": None, "password": None, "context": context},
    }


def label_config(control: str = "BrushLabels", labels: list[str] | None = None, extra: str = "") -> str:
    names = labels if labels is not None else COCO_NAMES + [n for n in VOC_NAMES if n not in COCO_NAMES]
    label_tags = "".join(f'<Label value="{name}"/>' for name in names)
    return (
        f'<View><Image name="image" value="$image"/>'
        f'<{control} name="tag" toName="image">{label_tags}</{control}>{extra}</View>'
    )
