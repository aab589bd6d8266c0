"""The WSGI entry for running under gunicorn directly: `gunicorn 'ml_backend.wsgi:app'` (settings from the
environment; use one worker process with threads, and no --preload once CUDA is in play)."""

from __future__ import annotations

from ml_backend.app import configure_logging, create_app
from ml_backend.settings import Settings

settings = Settings.from_env()
configure_logging(settings)
app = create_app(settings)
