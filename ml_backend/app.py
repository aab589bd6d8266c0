"""The Flask app factory: the HTTP layer over the prediction service (`service.py`), one per process."""

from __future__ import annotations

import logging

from flask import Flask

from ml_backend.engines.base import Engine
from ml_backend.protocol import blueprint
from ml_backend.service import PredictionService
from ml_backend.settings import Settings


def configure_logging(settings: Settings) -> None:
    """INFO logs by default; LOG_LEVEL=DEBUG adds per-region details (never tokens or image bytes)."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def create_app(settings: Settings, engine: Engine | None = None) -> Flask:
    """The WSGI app. `engine` is loaded from the settings when not given (tests pass one they built through
    the same loaders)."""
    service = PredictionService(settings, engine) if engine else PredictionService.from_settings(settings)
    app = Flask("segassist")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False
    app.extensions["segassist"] = service
    app.extensions["segassist.projects"] = {}
    app.register_blueprint(blueprint)
    return app
