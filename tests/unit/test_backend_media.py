"""Media: decoding every image kind, and fetching through a real local HTTP server with Label Studio's URL
shapes, tokens and the security rules (allowlist, metadata addresses, file://, traversal, limits)."""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from converters.errors import SegassistError
from ml_backend.media import MediaFetcher, TemporaryMediaError, decode_rgb
from ml_backend.settings import Settings
from tests.backend_support import MediaServer, png_bytes, sample_image

# -- decoding ---------------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_exif_orientation_is_applied() -> None:
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[0, :, 0] = 255  # a red top row
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_rgb(_encode(Image.fromarray(array), "PNG", exif=exif), 10_000)
    assert decoded.shape == (20, 10, 3)
    assert (decoded[:, -1, 0] == 255).all()  # the top row became the right column


def test_grey_rgba_palette_and_16_bit_become_rgb() -> None:
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    from_grey = decode_rgb(_encode(Image.fromarray(grey, "L")), 10_000)
    assert from_grey.shape == (8, 8, 3) and np.array_equal(from_grey[..., 1], grey)

    rgba = np.dstack([sample_image(8, 8), np.full((8, 8), 7, np.uint8)])
    assert np.array_equal(decode_rgb(_encode(Image.fromarray(rgba, "RGBA")), 10_000), rgba[..., :3])

    palette = Image.fromarray(sample_image(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    assert np.array_equal(decode_rgb(_encode(palette), 10_000), np.asarray(palette.convert("RGB")))

    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    from_deep = decode_rgb(_encode(Image.fromarray(deep)), 10_000)
    assert from_deep.dtype == np.uint8 and np.array_equal(from_deep[..., 0], (deep // 257).astype(np.uint8))


def test_pixel_limit_is_checked_before_decoding_and_corrupt_bytes_are_an_error() -> None:
    data = png_bytes(sample_image(40, 50))
    with pytest.raises(SegassistError, match="50x40 pixels, over the limit of 1999"):
        decode_rgb(data, 1999)
    with pytest.raises(SegassistError, match="does not decode"):
        decode_rgb(data[:40], 10_000)


# -- fetching ---------------------------------------------------------------------------------------------


@pytest.fixture
def server():
    media = MediaServer()
    yield media
    media.close()


def _jwt(payload: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(payload)}.c2ln"


def _fetcher(server: MediaServer, **settings: object) -> MediaFetcher:
    return MediaFetcher(Settings(label_studio_url=server.url, **settings))


IMAGE = sample_image(30, 40)


def test_uploads_are_fetched_from_label_studio_with_a_legacy_token(server: MediaServer) -> None:
    server.routes["/data/upload/3/cat.png"] = (200, {}, png_bytes(IMAGE))
    fetcher = _fetcher(server, label_studio_api_key="legacy-key-123")
    assert np.array_equal(fetcher.load_rgb("/data/upload/3/cat.png", 1), IMAGE)
    assert server.requests[-1][1]["Authorization"] == "Token legacy-key-123"
    # Cached: a second load does not download again.
    fetcher.load_rgb("/data/upload/3/cat.png", 1)
    assert len(server.requests) == 1


def test_the_token_goes_to_label_studio_origin_only_not_another_port_of_its_host(server: MediaServer) -> None:
    other = MediaServer()
    try:
        other.routes["/cat.png"] = (200, {}, png_bytes(IMAGE))
        fetcher = _fetcher(server, label_studio_api_key="legacy-key-123")
        assert np.array_equal(fetcher.load_rgb(f"{other.url}/cat.png", 1), IMAGE)
        assert "Authorization" not in other.requests[-1][1]
    finally:
        other.close()


def test_a_personal_access_token_is_refreshed_once_and_sent_as_bearer(server: MediaServer) -> None:
    pat = _jwt({"token_type": "refresh", "exp": time.time() + 3600})
    access = _jwt({"token_type": "access", "exp": time.time() + 300})

    def refresh(headers: dict) -> tuple[int, dict, bytes]:
        ok = json.loads(headers["_body"]) == {"refresh": pat}
        return (200, {}, json.dumps({"access": access}).encode()) if ok else (401, {}, b"{}")

    server.routes["/api/token/refresh/"] = refresh
    server.routes["/data/upload/1/a.png"] = (200, {}, png_bytes(IMAGE))
    server.routes["/data/upload/1/b.png"] = (200, {}, png_bytes(IMAGE))
    fetcher = _fetcher(server, label_studio_api_key=pat)
    fetcher.load_rgb("/data/upload/1/a.png", 1)
    fetcher.load_rgb("/data/upload/1/b.png", 2)
    paths = [path for path, _ in server.requests]
    assert paths == ["/api/token/refresh/", "/data/upload/1/a.png", "/data/upload/1/b.png"]
    assert server.requests[1][1]["Authorization"] == f"Bearer {access}"


def test_a_refused_refresh_is_an_error_without_the_token(server: MediaServer) -> None:
    pat = _jwt({"token_type": "refresh", "secret": "dont-print-me"})
    server.routes["/api/token/refresh/"] = (401, {}, b"{}")
    with pytest.raises(SegassistError, match="refused to refresh") as caught:
        _fetcher(server, label_studio_api_key=pat).load_rgb("/data/upload/1/a.png", 5)
    assert pat not in str(caught.value) and "task 5" in str(caught.value)


def test_local_files_are_read_under_the_document_root_only(server: MediaServer, tmp_path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(png_bytes(IMAGE))
    (tmp_path / "secret.png").write_bytes(png_bytes(IMAGE))
    fetcher = _fetcher(server, local_files_document_root=str(root))
    assert np.array_equal(fetcher.load_rgb("/data/local-files/?d=sub/a.png", 1), IMAGE)
    for hostile in ("/data/local-files/?d=../secret.png", "/data/local-files/?d=sub/../../secret.png"):
        with pytest.raises(SegassistError, match="leaves LOCAL_FILES_DOCUMENT_ROOT"):
            fetcher.load_rgb(hostile, 1)
    with pytest.raises(SegassistError, match="cannot read the local file"):
        fetcher.load_rgb("/data/local-files/?d=/etc/passwd", 1)  # read as <root>/etc/passwd
    assert server.requests == []
    with pytest.raises(SegassistError, match="must not be /"):
        MediaFetcher(Settings(local_files_document_root="/"))


def test_local_files_without_a_root_come_through_label_studio(server: MediaServer) -> None:
    server.routes["/data/local-files/?d=pics/a.png"] = (200, {}, png_bytes(IMAGE))
    fetcher = _fetcher(server, label_studio_api_key="k")
    assert np.array_equal(fetcher.load_rgb("/data/local-files/?d=pics/a.png", 1), IMAGE)


def test_cloud_uris_go_through_the_presign_endpoint_and_credentials_stay_with_label_studio(
    server: MediaServer,
) -> None:
    fileuri = base64.urlsafe_b64encode(b"s3://bucket/a.png").decode()
    port = server.url.rsplit(":", 1)[1]
    # Label Studio redirects to the "cloud" (here: the same server under another host name).
    server.routes[f"/tasks/9/presign/?fileuri={fileuri}"] = (
        302,
        {"Location": f"http://localhost:{port}/bucket/a.png?X-Amz-Signature=abc"},
        b"",
    )
    server.routes["/bucket/a.png?X-Amz-Signature=abc"] = (200, {}, png_bytes(IMAGE))
    fetcher = _fetcher(server, label_studio_api_key="k", allowed_hosts=("localhost",))
    assert np.array_equal(fetcher.load_rgb("s3://bucket/a.png", 9), IMAGE)
    (_, to_label_studio), (_, to_cloud) = server.requests
    assert to_label_studio["Authorization"] == "Token k"
    assert "Authorization" not in to_cloud
    with pytest.raises(SegassistError, match="needs the task id"):
        fetcher.load_rgb("gs://bucket/b.png", None)


@pytest.mark.parametrize(
    "reference, allowed, message",
    [
        ("file:///etc/passwd", ("*",), "file:// image URLs are not fetched"),
        ("ftp://127.0.0.1/a.png", ("*",), "ftp:// image URLs are not fetched"),
        (
            "http://images.example.invalid/a.png",
            (),
            "neither LABEL_STUDIO_URL's host nor in SEGASSIST_ALLOWED_HOSTS",
        ),
        ("http://169.254.169.254/latest/meta-data/", ("*",), "link-local/metadata"),
        ("http://[fe80::1]/a.png", ("*",), "link-local/metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", ("*",), "metadata host"),
        ("/etc/passwd", ("*",), "neither a URL nor a Label Studio data path"),
        ("", ("*",), "not a URL"),
    ],
)
def test_hostile_references_are_refused_without_a_request(
    server: MediaServer, reference: str, allowed: tuple, message: str
) -> None:
    with pytest.raises(SegassistError, match=message) as caught:
        _fetcher(server, allowed_hosts=allowed).load_rgb(reference, 4)
    assert "task 4" in str(caught.value)
    assert server.requests == []


def test_redirects_are_checked_hop_by_hop(server: MediaServer) -> None:
    server.routes["/to-metadata"] = (302, {"Location": "http://169.254.169.254/latest/"}, b"")
    server.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    fetcher = _fetcher(server, allowed_hosts=("*",))
    with pytest.raises(SegassistError, match="link-local/metadata"):
        fetcher.load_rgb(f"{server.url}/to-metadata", 1)
    with pytest.raises(SegassistError, match="more than 5 redirects"):
        fetcher.load_rgb(f"{server.url}/loop", 1)


def test_missing_images_size_limits_and_presigned_queries_in_errors(server: MediaServer) -> None:
    server.routes["/big.png"] = (200, {}, b"x" * 5000)
    fetcher = _fetcher(server, max_download_bytes=4000)
    with pytest.raises(SegassistError, match="HTTP 404") as caught:
        fetcher.load_rgb(f"{server.url}/nothing.png?X-Amz-Signature=secret", 2)
    assert "secret" not in str(caught.value) and "nothing.png" in str(caught.value)
    with pytest.raises(SegassistError, match="larger than the download limit"):
        fetcher.load_rgb(f"{server.url}/big.png", 2)
    with pytest.raises(SegassistError, match="set LABEL_STUDIO_URL"):
        MediaFetcher(Settings()).load_rgb("/data/upload/1/a.png", 2)


def test_what_arrived_instead_of_an_image_is_named_with_the_url(server: MediaServer) -> None:
    page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
    server.routes["/data/upload/1/login.png"] = (200, {"Content-Type": "text/html; charset=utf-8"}, page)
    with pytest.raises(SegassistError) as caught:
        _fetcher(server).load_rgb("/data/upload/1/login.png", 5)
    message = str(caught.value)
    assert message.startswith("file /data/upload/1/login.png, task 5: the image does not decode")
    assert f"received {len(page)} bytes, Content-Type text/html; charset=utf-8" in message
    assert "starting b'<!DOCTYPE html><html><bo'" in message and "BytesIO" not in message
    assert not isinstance(caught.value, TemporaryMediaError)


def test_failures_that_may_pass_are_temporary_and_the_others_are_not(server: MediaServer) -> None:
    def slow(headers: dict) -> tuple[int, dict, bytes]:
        time.sleep(1.0)
        return 200, {}, png_bytes(IMAGE)

    server.routes.update(
        {
            "/busy.png": (503, {}, b"busy"),
            "/limited.png": (429, {}, b"slow down"),
            "/slow.png": slow,
            "/gone.png": (404, {}, b"not found"),
            "/forbidden.png": (403, {}, b"no"),
        }
    )
    fetcher = _fetcher(server, allowed_hosts=("127.0.0.1",), media_timeout_s=0.3)
    for path, message in (("/busy.png", "HTTP 503"), ("/limited.png", "HTTP 429"), ("/slow.png", "Timeout")):
        with pytest.raises(TemporaryMediaError, match=message):
            fetcher.load_rgb(f"{server.url}{path}", 1)
    for path in ("/gone.png", "/forbidden.png"):
        with pytest.raises(SegassistError) as caught:
            fetcher.load_rgb(f"{server.url}{path}", 1)
        assert not isinstance(caught.value, TemporaryMediaError)
    # A port nothing listens on: the connection is refused, which may pass too.
    with pytest.raises(TemporaryMediaError, match="ConnectionError"):
        fetcher.load_rgb("http://127.0.0.1:9/x.png", 1)


def test_the_cache_is_bounded_in_bytes(server: MediaServer) -> None:
    for name in "abc":
        server.routes[f"/{name}.png"] = (200, {}, png_bytes(IMAGE))
    fetcher = _fetcher(server, media_cache_bytes=2 * IMAGE.nbytes)
    for name in "abca":
        fetcher.load_rgb(f"{server.url}/{name}.png", 1)
    # "a" was evicted by "c", so it was downloaded twice.
    assert [path for path, _ in server.requests] == ["/a.png", "/b.png", "/c.png", "/a.png"]
