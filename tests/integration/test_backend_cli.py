"""`segassist serve` (gunicorn, the embedded default engine, settings from the environment) and
`segassist weights`, run as real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from converters.cli import main
from ml_backend.settings import ENV_VARS

SEGASSIST = [sys.executable, "-m", "converters.cli"]
ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        SEGASSIST + args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=300
    )


def test_serve_help_documents_every_option_with_its_variable(capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for option in ("host", "port", "engine", "model", "mode", "device", "threads"):
        assert f"--{option}" in text and ENV_VARS[option] in text


@pytest.mark.slow
def test_weights_list_names_the_architectures_and_their_cache_state(tmp_path) -> None:
    done = _run(["weights", "list"], TORCH_HOME=str(tmp_path))
    assert done.returncode == 0
    assert "maskrcnn_resnet50_fpn_v2\tnot cached" in done.stdout
    assert "deeplabv3_resnet50\tnot cached" in done.stdout


@pytest.mark.slow
def test_weights_download_offline_names_the_file_it_could_not_get(tmp_path) -> None:
    # A proxy on a closed port makes every download fail the way an offline machine does.
    offline = {"TORCH_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    done = _run(["weights", "download", "lraspp_mobilenet_v3_large"], **offline)
    assert done.returncode == 1
    expected = tmp_path / "hub" / "checkpoints" / "lraspp_mobilenet_v3_large-d234d4ea.pth"
    assert str(expected) in done.stderr and "Traceback" not in done.stderr
    assert not expected.exists()
    done = _run(["weights", "download", "facebook/mask2former-swin-tiny-coco-panoptic"], **offline)
    assert done.returncode == 1 and "cannot download facebook/mask2former" in done.stderr
    done = _run(["weights", "download", "yolo"], **offline)
    assert done.returncode == 1 and "unknown weights 'yolo'" in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_with_no_options_runs_the_default_engine_under_gunicorn() -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SEGASSIST_PORT": str(port),
        "SEGASSIST_DEVICE": "cpu",
        "BASIC_AUTH_USER": "ls",
        "BASIC_AUTH_PASS": "pw",
    }
    process = subprocess.Popen(
        SEGASSIST + ["serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(1)
        assert health.status_code == 200 and health.json()["engine"] == "sam"
        assert requests.post(f"http://127.0.0.1:{port}/setup", json={}, timeout=5).status_code == 401
        setup = requests.post(f"http://127.0.0.1:{port}/setup", json={}, auth=("ls", "pw"), timeout=5)
        assert setup.json()["model_version"] == health.json()["model_version"]
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0].decode()
    assert "Booting worker" in output and "pw" not in output


@pytest.mark.slow
def test_serve_stops_with_a_named_error_when_weights_are_missing(tmp_path) -> None:
    missing = tmp_path / "mrcnn.pth"
    done = _run(
        [
            "serve",
            "--engine",
            "torchvision",
            "--model",
            f"maskrcnn_resnet50_fpn_v2={missing}",
            "--port",
            str(_free_port()),
        ]
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"segassist serve: error: file {missing}: model weights not found (check the path)"]
    assert "Traceback" not in done.stderr and "Worker failed to boot" not in done.stderr
