"""Backend settings: one frozen object built from the environment, overridden by `segassist serve` options.

This is the one place the backend reads environment variables: every field has exactly one (`ENV_VARS`), and
everything else (engines, media, the HTTP layer, logging) takes its values from a `Settings`. Label Studio's
own variable names are kept where the ecosystem already uses them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from converters.errors import SegassistError
from ml_backend.engines import ENGINES, MODES

# `auto`: the richest automatic mode the engine has.
MODE_CHOICES = ("auto", *MODES)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 9090
    engine: str = "sam"
    model: str | None = None
    mode: str = "auto"
    device: str = "auto"
    threads: int = 8
    # Tasks per forward pass (0: 8 on a GPU, 2 on a CPU, where bigger batches are not faster); the next
    # tasks of a /predict are decoded while a batch runs.
    batch_size: int = 0
    score_threshold: float = 0.5
    # Label Studio renders hundreds of brush regions badly; keep the best-scoring ones.
    max_regions: int = 100
    label_map_file: str | None = None
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = field(default=None, repr=False)
    label_studio_url: str | None = None
    label_studio_api_key: str | None = field(default=None, repr=False)
    local_files_document_root: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    max_image_pixels: int = 64_000_000
    max_download_bytes: int = 128 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024
    media_timeout_s: float = 30.0
    media_cache_bytes: int = 512 * 1024 * 1024
    # Seconds a batch /predict spends before it answers with what it has (0: no limit); below Label Studio's
    # ML_TIMEOUT_PREDICT (100 s) by the time of a forward or two.
    predict_budget_s: float = 60.0
    # The SAM family's image embedding cache (one embedding is 4 MiB, so 64 images; SAM 2: 16 MiB).
    sam_cache_mb: float = 256.0
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SegassistError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.mode not in MODE_CHOICES:
            raise SegassistError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODE_CHOICES)}")
        if (self.basic_auth_user is None) != (self.basic_auth_pass is None):
            raise SegassistError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS, or neither")
        if self.threads < 1 or self.batch_size < 0:
            raise SegassistError("threads must be at least 1 and the batch size at least 0 (automatic)")
        if self.sam_cache_mb < 0:
            raise SegassistError("the SAM embedding cache must be at least 0 MiB")
        if self.predict_budget_s < 0:
            raise SegassistError("the predict budget must be at least 0 seconds (0: no limit)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from environment variables, then `overrides` (command-line options) where not None."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for name, variable in ENV_VARS.items():
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            values[name] = _parse(name, types[name], raw, variable)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


# Field name -> environment variable.
ENV_VARS: dict[str, str] = {
    "host": "SEGASSIST_HOST",
    "port": "SEGASSIST_PORT",
    "engine": "SEGASSIST_ENGINE",
    "model": "SEGASSIST_MODEL",
    "mode": "SEGASSIST_MODE",
    "device": "SEGASSIST_DEVICE",
    "threads": "SEGASSIST_THREADS",
    "batch_size": "SEGASSIST_BATCH_SIZE",
    "score_threshold": "SEGASSIST_SCORE_THRESHOLD",
    "max_regions": "SEGASSIST_MAX_REGIONS",
    "label_map_file": "SEGASSIST_LABEL_MAP",
    "basic_auth_user": "BASIC_AUTH_USER",
    "basic_auth_pass": "BASIC_AUTH_PASS",
    "label_studio_url": "LABEL_STUDIO_URL",
    "label_studio_api_key": "LABEL_STUDIO_API_KEY",
    "local_files_document_root": "LOCAL_FILES_DOCUMENT_ROOT",
    "allowed_hosts": "SEGASSIST_ALLOWED_HOSTS",
    "max_image_pixels": "SEGASSIST_MAX_IMAGE_PIXELS",
    "max_download_bytes": "SEGASSIST_MAX_DOWNLOAD_BYTES",
    "max_request_bytes": "SEGASSIST_MAX_REQUEST_BYTES",
    "media_timeout_s": "SEGASSIST_MEDIA_TIMEOUT",
    "media_cache_bytes": "SEGASSIST_MEDIA_CACHE_BYTES",
    "predict_budget_s": "SEGASSIST_PREDICT_BUDGET",
    "sam_cache_mb": "SEGASSIST_SAM_CACHE_MB",
    "log_level": "LOG_LEVEL",
}


def _parse(name: str, kind: object, raw: str, variable: str) -> object:
    kind = str(kind)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SegassistError(f"{variable}={raw!r} is not a number") from None
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
