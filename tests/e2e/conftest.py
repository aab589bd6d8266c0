"""Fixtures for the end-to-end tests: a real Label Studio 1.23 server, a media server and `segassist serve`.

Label Studio lives in its own virtual environment, `.venv-ls` at the repository root (its pins conflict with
ours); it is created on first use and reused afterwards. Each test session starts Label Studio on a fresh data
directory: the admin user, the legacy token and the organization's token settings come from the environment
variables below, exactly as an operator would set them, on the first start; later sessions seed the directory
with a snapshot of that first start instead of migrating an empty database again.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.harness import LabelStudioAPI, ManagedProcess, MediaServer, clean_environment, free_port

REPO = Path(__file__).resolve().parents[2]
LS_VENV = REPO / ".venv-ls"
LS_REQUIREMENT = "label-studio==1.23.*"
SEGASSIST = Path(sys.executable).with_name("segassist")

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-pass-123456"
LEGACY_TOKEN = "e2e0legacy0token0123456789abcdef"
DATABASE = "label_studio.sqlite3"

# A first start on an empty data directory runs the SQLite migrations: ~25 s on an idle machine, over 4 min
# on a busy 2-core one.
LS_START_TIMEOUT_S = 600
BACKEND_START_TIMEOUT_S = 300


def ensure_label_studio_venv() -> Path:
    """`.venv-ls/bin/label-studio`, installing Label Studio into `.venv-ls` when it is not there yet."""
    executable = LS_VENV / "bin" / "label-studio"
    if executable.exists():
        return executable
    commands = [
        [sys.executable, "-m", "venv", str(LS_VENV)],
        [str(LS_VENV / "bin" / "pip"), "install", "--quiet", LS_REQUIREMENT],
    ]
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(
                f"could not set up {LS_VENV} with: {' '.join(command)}\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
    return executable


@dataclass(frozen=True)
class LabelStudio:
    url: str
    legacy_token: str
    process: ManagedProcess
    # LOCAL_FILES_DOCUMENT_ROOT: `/data/local-files/?d=PATH` serves files below it (with a storage).
    local_files_root: Path

    def api(self, authorization: str | None = None) -> LabelStudioAPI:
        """A client; by default authenticated with the legacy token."""
        return LabelStudioAPI(self.url, authorization or f"Token {self.legacy_token}")


def data_template() -> Path:
    """Where a just-initialised data directory is kept, keyed by Label Studio's version and admin settings.

    The first start on an empty directory runs every migration (25 s on an idle machine, minutes on a busy
    one); later sessions start from a copy of that state in a few seconds. It lives in `.venv-ls`, so it is
    cached, and discarded, together with the Label Studio install.
    """
    (dist_info,) = LS_VENV.glob("lib/python*/site-packages/label_studio-*.dist-info")
    key = hashlib.sha256(
        f"{dist_info.name}|{ADMIN_EMAIL}|{ADMIN_PASSWORD}|{LEGACY_TOKEN}".encode()
    ).hexdigest()
    return LS_VENV / f"e2e-data-template-{key[:12]}"


def save_data_template(data: Path, template: Path) -> None:
    """Snapshot a running Label Studio's fresh data directory: SQLite's backup API copies the live database
    consistently; `.env` holds the SECRET_KEY the database's tokens were made with."""
    staging = Path(tempfile.mkdtemp(prefix=template.name, dir=template.parent))
    try:
        with (
            closing(sqlite3.connect(data / DATABASE)) as source,
            closing(sqlite3.connect(staging / DATABASE)) as copy,
        ):
            source.backup(copy)
        shutil.copy2(data / ".env", staging / ".env")
        staging.rename(template)
    except OSError:
        pass  # another session saved it first
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def running_label_studio(workdir: Path) -> Iterator[LabelStudio]:
    """Label Studio on a fresh data directory in `workdir`, stopped on exit (the benchmarks use it too)."""
    executable = ensure_label_studio_venv()
    data = workdir / "data"
    local_files_root = workdir / "local-files"
    local_files_root.mkdir()
    template = data_template()
    if template.is_dir():
        shutil.copytree(template, data)
    port = free_port()
    env = clean_environment(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
            "LABEL_STUDIO_PASSWORD": ADMIN_PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": LEGACY_TOKEN,
            # Stored on the organization when it is created, i.e. on this first start.
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            # Both are needed for an ML backend on 127.0.0.1: the model URL check and the webhook LS creates.
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            # The first CPU /predict loads the model; LS's default 100 s is tight on a busy 2-core machine.
            "ML_TIMEOUT_PREDICT": "300",
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(local_files_root),
        }
    )
    argv = [str(executable), "start", "--no-browser", "--port", str(port), "--internal-host", "127.0.0.1"]
    process = ManagedProcess("label-studio", argv, env, workdir / "label-studio.log", cwd=workdir)
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_healthy(f"{url}/health", LS_START_TIMEOUT_S)
        if not template.is_dir():
            save_data_template(data, template)
        yield LabelStudio(
            url=url, legacy_token=LEGACY_TOKEN, process=process, local_files_root=local_files_root
        )
    finally:
        process.stop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(scope="session")
def personal_access_token(label_studio: LabelStudio) -> str:
    """A Personal Access Token (a JWT refresh token), created the way the UI's "Account & Settings" does."""
    return label_studio.api().call("POST", "/api/token/", json={})["token"]


@dataclass(frozen=True)
class MediaImages:
    server: MediaServer
    directory: Path
    names: tuple[str, ...]

    def url(self, name: str) -> str:
        # "localhost", not Label Studio's 127.0.0.1: the backend must allow this host explicitly.
        return self.server.url(name, host="localhost")


def _small_rgb(image: np.ndarray, longest_side: int = 192) -> Image.Image:
    picture = Image.fromarray(image).convert("RGB")
    picture.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    return picture


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaImages]:
    """skimage's sample photos as small PNGs behind a local HTTP server."""
    import skimage.data

    directory = tmp_path_factory.mktemp("media")
    names = []
    for name in ("astronaut", "coffee", "chelsea"):
        _small_rgb(getattr(skimage.data, name)()).save(directory / f"{name}.png")
        names.append(f"{name}.png")
    server = MediaServer(directory)
    try:
        yield MediaImages(server=server, directory=directory, names=tuple(names))
    finally:
        server.stop()


@dataclass(frozen=True)
class Backend:
    url: str
    process: ManagedProcess


def start_backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    label_studio: LabelStudio,
    api_key: str,
    name: str,
    settings: Mapping[str, str] | None = None,
) -> Backend:
    """`segassist serve` as a real process on the embedded default model, using `api_key` for Label Studio;
    `settings`: more environment variables. It runs and logs in a temporary folder named after it."""
    if not SEGASSIST.exists():
        pytest.fail(f"{SEGASSIST} is missing: install the project (make setup)")
    port = free_port()
    env = clean_environment(
        {
            "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": api_key,
            # Images imported by URL live on the media server's host, which is not Label Studio's.
            "SEGASSIST_ALLOWED_HOSTS": "localhost",
            "SEGASSIST_DEVICE": "cpu",
            "SEGASSIST_THREADS": "2",
            **(settings or {}),
        }
    )
    argv = [str(SEGASSIST), "serve", "--host", "127.0.0.1", "--port", str(port)]
    workdir = tmp_path_factory.mktemp(name)
    process = ManagedProcess(name, argv, env, workdir / f"{name}.log", cwd=workdir)
    request.addfinalizer(process.stop)
    url = f"http://127.0.0.1:{port}"
    process.wait_healthy(f"{url}/health", BACKEND_START_TIMEOUT_S)
    return Backend(url=url, process=process)


@pytest.fixture(scope="session")
def backend_with_pat(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    label_studio: LabelStudio,
    personal_access_token: str,
) -> Backend:
    return start_backend(request, tmp_path_factory, label_studio, personal_access_token, "backend-pat")


@pytest.fixture(scope="session")
def backend_with_tiny_budget(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    label_studio: LabelStudio,
    personal_access_token: str,
) -> Backend:
    """A backend whose /predict answers after its first task, as a long selection does after 60 s."""
    return start_backend(
        request,
        tmp_path_factory,
        label_studio,
        personal_access_token,
        "backend-budget",
        settings={"SEGASSIST_PREDICT_BUDGET": "0.001"},
    )


@pytest.fixture(scope="session")
def backend_with_legacy_token(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, label_studio: LabelStudio
) -> Backend:
    return start_backend(
        request,
        tmp_path_factory,
        label_studio,
        label_studio.legacy_token,
        "backend-legacy",
    )
