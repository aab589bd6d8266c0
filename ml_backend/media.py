"""Task media: turn a task's image reference into an (H, W, 3) uint8 RGB array, safely.

Resolves what Label Studio puts in task data: `/data/upload/...` (uploads), `/data/local-files/?d=...` (read
from LOCAL_FILES_DOCUMENT_ROOT when set, else through Label Studio), `s3://`, `gs://`, `azure-blob://` (Label
Studio's presign endpoint), and plain http(s) URLs (presigned cloud URLs included).

Security: only LABEL_STUDIO_URL's host and SEGASSIST_ALLOWED_HOSTS are fetched (each redirect hop is checked);
link-local and cloud metadata addresses are always refused, so is file://; local paths must stay under the
document root; downloads have a timeout and a size limit; images have a pixel limit checked before decoding.
Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import io
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import numpy as np
import requests
from PIL import Image, ImageOps

from converters.errors import SegassistError
from ml_backend.settings import Settings

log = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
MAX_REDIRECTS = 5
# HTTP statuses below 500 that say "not now" rather than "never": timeout, too early, rate limited.
TEMPORARY_STATUSES = (408, 425, 429)
# Addresses no image lives at: cloud metadata services (and the rest of the link-local ranges).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
METADATA_HOSTNAMES = frozenset({"metadata.google.internal", "metadata"})


class TemporaryMediaError(SegassistError):
    """An image that could not be fetched now but may be later: a timeout, a refused connection, an HTTP 5xx
    or 429. Such a task gets no prediction, so Label Studio asks for it again."""


class LabelStudioAuth:
    """The Authorization header for Label Studio: a Personal Access Token (a JWT refresh token) is exchanged
    for a short-lived access token sent as Bearer; a legacy token is sent as `Token <key>`."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._is_personal_access_token = bool(api_key) and _jwt_payload(api_key) is not None
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires_at = 0.0

    def header(self) -> dict[str, str]:
        if not self._api_key:
            return {}
        if not self._is_personal_access_token:
            return {"Authorization": f"Token {self._api_key}"}
        with self._lock:
            if self._access is None or time.time() > self._expires_at:
                self._refresh()
            return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        url = urljoin(self._base_url + "/", "api/token/refresh/")
        try:
            response = requests.post(url, json={"refresh": self._api_key}, timeout=self._timeout_s)
            response.raise_for_status()
            access = response.json()["access"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as error:
            # The message names the endpoint and status, never the token.
            raise SegassistError(
                f"Label Studio refused to refresh LABEL_STUDIO_API_KEY at {url}: {type(error).__name__} "
                f"{getattr(getattr(error, 'response', None), 'status_code', '')}".rstrip()
            ) from None
        payload = _jwt_payload(access) or {}
        # Refresh a little before expiry; without an exp claim, reuse for a minute.
        self._expires_at = float(payload.get("exp", time.time() + 90)) - 30
        self._access = access


def _jwt_payload(token: str) -> dict | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in: the token goes to this origin only."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


class MediaFetcher:
    """Fetches and decodes task images; keeps recently decoded images in a small byte-bounded cache."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ls_url = (settings.label_studio_url or "").rstrip("/") or None
        self._ls_origin = _origin(self._ls_url) if self._ls_url else None
        self._auth = LabelStudioAuth(self._ls_url, settings.label_studio_api_key, settings.media_timeout_s)
        self._allowed = tuple(h.lower() for h in settings.allowed_hosts)
        root = settings.local_files_document_root
        self._document_root = Path(root).resolve() if root else None
        if self._document_root is not None and self._document_root == Path("/"):
            raise SegassistError("LOCAL_FILES_DOCUMENT_ROOT must not be /")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._session = requests.Session()

    # -- public ----------------------------------------------------------------------------------------------

    def task_loader(self, value_key: str) -> Callable[[dict], np.ndarray]:
        """A function loading a Label Studio task's image from its data key `value_key` (the label config's
        `<Image value="$key">`), raising SegassistError naming the task."""
        return functools.partial(self.load_task, value_key=value_key)

    def load_task(self, task: dict, value_key: str) -> np.ndarray:
        """The image of a Label Studio task, found under `task["data"][value_key]`."""
        task_id = task.get("id") if isinstance(task, dict) else None
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise SegassistError("the task has no data object", task_id=task_id)
        # Label Studio names the value $undefined$ in tasks imported before the config named it.
        reference = data.get(value_key, data.get("$undefined$"))
        if reference is None:
            raise SegassistError(
                f'the task data has no {value_key!r} (the config\'s <Image value="${value_key}">)',
                task_id=task_id,
            )
        return self.load_rgb(reference, task_id)

    def load_rgb(self, reference: str, task_id: object = None) -> np.ndarray:
        """The image `reference` (as found in task data) as (H, W, 3) uint8 RGB."""
        if not isinstance(reference, str) or not reference:
            raise SegassistError(f"the task's image reference is not a URL: {reference!r}", task_id=task_id)
        with self._cache_lock:
            cached = self._cache.get(reference)
            if cached is not None:
                self._cache.move_to_end(reference)
                return cached
        try:
            data, content_type = self._read(reference, task_id)
            image = decode_rgb(data, self._settings.max_image_pixels, content_type)
        except SegassistError as error:
            raise error.at(task_id=task_id, file=_redact(reference)) from None
        self._remember(reference, image)
        return image

    # -- resolution ------------------------------------------------------------------------------------------

    def _read(self, reference: str, task_id: object) -> tuple[bytes, str | None]:
        """The bytes behind `reference` and their declared Content-Type (None for local files)."""
        parts = urlsplit(reference)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            return self._download(reference)
        if scheme in CLOUD_SCHEMES:
            if task_id is None:
                raise SegassistError(f"a {scheme}:// image needs the task id to be presigned")
            fileuri = base64.urlsafe_b64encode(reference.encode()).decode()
            return self._download(self._ls(f"tasks/{quote(str(task_id))}/presign/?fileuri={fileuri}"))
        if scheme:
            raise SegassistError(f"{scheme}:// image URLs are not fetched")
        path = parts.path
        if path.startswith("/data/local-files"):
            relative = parse_qs(parts.query).get("d", [""])[0]
            if self._document_root is not None:
                return self._read_local(relative), None
            return self._download(self._ls(reference.lstrip("/")))
        if path.startswith(("/data/upload/", "data/upload/")):
            return self._download(self._ls(path.lstrip("/")))
        raise SegassistError("the image reference is neither a URL nor a Label Studio data path")

    def _ls(self, relative: str) -> str:
        if self._ls_url is None:
            raise SegassistError("this image is served by Label Studio: set LABEL_STUDIO_URL (with http://)")
        return f"{self._ls_url}/{relative}"

    def _read_local(self, relative: str) -> bytes:
        root = self._document_root
        target = (root / relative.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise SegassistError("the local file path leaves LOCAL_FILES_DOCUMENT_ROOT")
        size_limit = self._settings.max_download_bytes
        try:
            if target.stat().st_size > size_limit:
                raise SegassistError(f"the local file is larger than {size_limit} bytes")
            return target.read_bytes()
        except OSError as error:
            raise SegassistError(f"cannot read the local file: {error.strerror}") from None

    # -- network ---------------------------------------------------------------------------------------------

    def _is_label_studio_host(self, host: str) -> bool:
        return self._ls_origin is not None and host == self._ls_origin[1]

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise SegassistError(f"refusing a {parts.scheme or 'scheme-less'} URL (only http and https)")
        host = (parts.hostname or "").lower()
        if not host:
            raise SegassistError("refusing a URL without a host")
        allowed = self._is_label_studio_host(host) or any(fnmatch.fnmatchcase(host, p) for p in self._allowed)
        if not allowed:
            raise SegassistError(
                f"refusing to fetch from host {host!r}: "
                "neither LABEL_STUDIO_URL's host nor in SEGASSIST_ALLOWED_HOSTS"
            )
        if host in METADATA_HOSTNAMES:
            raise SegassistError(f"refusing the metadata host {host!r}")
        try:
            infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
        except (socket.gaierror, UnicodeError):
            raise SegassistError(f"cannot resolve host {host!r}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%")[0])
            if address in METADATA_ADDRESSES or address.is_link_local or address.is_unspecified:
                raise SegassistError(f"refusing host {host!r}: it resolves to a link-local/metadata address")

    def _download(self, url: str) -> tuple[bytes, str | None]:
        settings = self._settings
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            # Credentials go only to Label Studio's own origin, never to another port or a redirect target.
            headers = self._auth.header() if _origin(url) == self._ls_origin else {}
            try:
                response = self._session.get(
                    url, headers=headers, timeout=settings.media_timeout_s, stream=True, allow_redirects=False
                )
            except requests.RequestException as error:
                # Timeouts and refused or dropped connections may pass: Label Studio should ask again.
                raise TemporaryMediaError(f"cannot download the image: {type(error).__name__}") from None
            with response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status_code != 200:
                    status = response.status_code
                    temporary = status >= 500 or status in TEMPORARY_STATUSES
                    raise (TemporaryMediaError if temporary else SegassistError)(
                        f"the image download answered HTTP {status}"
                    )
                return _read_limited(response, settings.max_download_bytes), response.headers.get(
                    "Content-Type"
                )
        raise SegassistError(f"more than {MAX_REDIRECTS} redirects")

    # -- cache -----------------------------------------------------------------------------------------------

    def _remember(self, reference: str, image: np.ndarray) -> None:
        limit = self._settings.media_cache_bytes
        if image.nbytes > limit:
            return
        with self._cache_lock:
            if reference in self._cache:
                return
            self._cache[reference] = image
            self._cache_bytes += image.nbytes
            while self._cache_bytes > limit:
                _, evicted = self._cache.popitem(last=False)
                self._cache_bytes -= evicted.nbytes


def _read_limited(response: requests.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise SegassistError(f"the image is larger than the download limit ({limit} bytes)")
    chunks, total = [], 0
    for chunk in response.iter_content(chunk_size=1 << 16):
        total += len(chunk)
        if total > limit:
            raise SegassistError(f"the image is larger than the download limit ({limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _redact(reference: str) -> str:
    """The reference without its query string: presigned URLs carry credentials there."""
    parts = urlsplit(reference)
    if parts.path.startswith("/data/local-files"):
        return reference
    return parts._replace(query="", fragment="").geturl()


def decode_rgb(data: bytes, max_pixels: int, content_type: str | None = None) -> np.ndarray:
    """Decode image bytes to (H, W, 3) uint8 RGB: EXIF orientation applied; grey, alpha, palette and 16-bit
    images converted; the pixel count checked from the header before any pixel is decoded. Bytes that do not
    decode are described in the error (size, `content_type` as the server declared it, first bytes): an HTML
    login page or an error text says at once what went wrong."""
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > max_pixels:
            raise SegassistError(
                f"the image has {width}x{height} pixels, "
                f"over the limit of {max_pixels} (SEGASSIST_MAX_IMAGE_PIXELS)"
            )
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit grey: keep the top 8 bits of the 16-bit range.
            grey = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) // 257
            return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
        if image.mode == "F":
            grey = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2)
        # A writable array: torch.from_numpy warns on read-only buffers.
        return np.array(image.convert("RGB"))
    except SegassistError:
        raise
    except Image.UnidentifiedImageError:
        raise SegassistError(
            f"the image does not decode: not an image format Pillow reads; {_received(data, content_type)}"
        ) from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise SegassistError(f"the image does not decode: {error}; {_received(data, content_type)}") from None


def _received(data: bytes, content_type: str | None) -> str:
    """What arrived instead of an image, for the log: size, declared type, the first bytes."""
    declared = f", Content-Type {content_type}" if content_type else ""
    return f"received {len(data)} bytes{declared}, starting {data[:24]!r}"
