"""Processes and HTTP helpers for the end-to-end tests: Label Studio, the media server and `segassist serve`.

Every process runs in its own process group so that stopping it also stops whatever it spawned (Label
Studio's server, gunicorn workers); the fixtures register `stop()` as a finalizer right after the start, so a
failing test or fixture still tears everything down.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

# Variables that must never leak from the developer's shell into Label Studio or the backend: Label Studio
# reads plain USERNAME/PASSWORD too (get_env tries LABEL_STUDIO_<name>, HEARTEX_<name>, then <name>).
_SCRUBBED_PREFIXES = ("LABEL_STUDIO_", "HEARTEX_", "SEGASSIST_")
_SCRUBBED_NAMES = {"USERNAME", "PASSWORD", "USER_TOKEN", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"}


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without Label Studio / segassist settings, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES) and name not in _SCRUBBED_NAMES
    }
    env.update(extra)
    return env


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ManagedProcess:
    """A subprocess in its own process group, with its output in a log file that failures quote."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self._process.poll() is None

    def log_tail(self, chars: int = 6000) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace")
        return text[-chars:]

    def wait_healthy(self, url: str, timeout_s: float) -> None:
        """Poll `url` until it answers 200; fail with the log tail if the process dies or hangs."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(
                    f"{self.name} exited with code {self._process.returncode} before {url} answered:\n"
                    f"{self.log_tail()}"
                )
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.name} did not answer {url} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after a grace period."""
        if self.running():
            _signal_group(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=15)
        # Children that outlived their parent are still in the group.
        _signal_group(self._process.pid, signal.SIGKILL)
        self._log.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class MediaServer:
    """A static file server on 127.0.0.1 in a thread: the 'images hosted somewhere' of a URL import."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="e2e-media", daemon=True)
        self._thread.start()

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{name}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class LabelStudioAPI:
    """Plain `requests` against Label Studio's REST API with one Authorization header."""

    def __init__(self, base_url: str, authorization: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = authorization

    def call(self, method: str, path: str, *, expect: tuple[int, ...] = (200, 201), **kwargs: Any) -> Any:
        """The decoded JSON answer (raw bytes for non-JSON); fails quoting the body on other statuses."""
        # Longer than Label Studio's own ML_TIMEOUT_PREDICT (300 s here), so Label Studio reports the timeout.
        kwargs.setdefault("timeout", 600)
        response = self._session.request(method, f"{self.base_url}{path}", **kwargs)
        if response.status_code not in expect:
            raise AssertionError(
                f"{method} {path} answered {response.status_code}, expected {expect}: {response.text[:2000]}"
            )
        if response.status_code == 204:
            return None
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return response.json()
        return response.content
