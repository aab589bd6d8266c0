"""The HTML report: self-contained, the flagged segment outlined, and it renders in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html import unescape as html_unescape
from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.cli import main
from tests.unit.qa_helpers import (
    LS_CONFIG,
    brush_region,
    clean_tasks,
    copy_panoptic_sample,
    hf_polygons_with_an_empty_mask,
    write_json,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMG_SRC = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _thumbnails(html: str) -> list[np.ndarray]:
    return [
        cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        for data in IMG_SRC.findall(html)
    ]


def _red_pixels(thumbnail: np.ndarray) -> int:
    blue, green, red = cv2.split(thumbnail.astype(np.int32))
    return int(np.count_nonzero((red > 200) & (green < 40) & (blue < 40)))


@pytest.fixture
def panoptic_report(realdata: Path, tmp_path: Path) -> Path:
    """A report on the real sample, photos as background: in image 142238 one segment's area is tripled and
    every box is shifted (a long findings table beside the thumbnail)."""
    json_path, images = copy_panoptic_sample(realdata, tmp_path)
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segments_info"][0]["area"] *= 3
    for segment in data["annotations"][0]["segments_info"]:
        segment["bbox"][1] += 1
    write_json(json_path, data)
    report = tmp_path / "report.html"
    assert main(["qa", str(json_path), "--images", str(images), "--html", str(report)]) == 1
    return report


def test_report_is_self_contained_with_an_outlined_thumbnail(panoptic_report: Path) -> None:
    html = panoptic_report.read_text()
    assert "AREA_MISMATCH" in html and "image 142238" in html
    assert not re.search(r'src="(?!data:)', html), "every image must be embedded"
    (thumbnail,) = _thumbnails(html)
    assert thumbnail.shape == (240, 360, 3)  # 640 x 427 scaled to a 360 px side
    assert _red_pixels(thumbnail) > 20  # the flagged segment is outlined
    assert thumbnail.std() > 20  # the photo is under the overlay, not a flat canvas


def test_labelstudio_report_outlines_the_region(tmp_path: Path) -> None:
    tasks = clean_tasks()
    tasks[1]["annotations"][0]["result"] = [
        brush_region("b2", np.pad(np.full((20, 30), 255, np.uint8), ((5, 23), (5, 29))), "Horse")
    ]
    config = tmp_path / "config.xml"
    config.write_text(LS_CONFIG)
    export = write_json(tmp_path / "export.json", tasks)
    report = tmp_path / "ls.html"
    assert main(["qa", str(export), "--label-config", str(config), "--html", str(report)]) == 1
    html = report.read_text()
    assert "LS_LABEL_NOT_IN_CONFIG" in html and "task 2" in html
    (thumbnail,) = _thumbnails(html)
    ys, xs = np.nonzero(cv2.inRange(thumbnail, (0, 0, 200), (40, 40, 255)))
    # 64 x 48 scales up to at most 360 px: the outline sits around the 30 x 20 box at (5, 5).
    scale = thumbnail.shape[1] / 64
    assert abs(xs.min() - 5 * scale) <= 2 and abs(ys.min() - 5 * scale) <= 2


def test_coco_report_draws_overlapping_and_empty_annotations(realdata: Path, tmp_path: Path) -> None:
    source = write_json(tmp_path / "instances.json", hf_polygons_with_an_empty_mask(realdata))
    report = tmp_path / "coco.html"
    images = realdata / "hf_transformers_coco"
    assert (
        main(["qa", str(source), "--target", "panoptic", "--images", str(images), "--html", str(report)]) == 1
    )
    html = report.read_text()
    assert "SEGMENT_EMPTY" in html and "SEGMENTS_OVERLAP" in html
    (thumbnail,) = _thumbnails(html)
    assert thumbnail.shape == (270, 360, 3) and _red_pixels(thumbnail) > 100


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_report_renders_in_headless_chromium(panoptic_report: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    # A copy of the report that writes, after load, each image's decoded width into the DOM.
    probe = tmp_path / "probe.html"
    probe.write_text(
        panoptic_report.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const p = document.createElement('pre');"
            " p.id = 'probe'; p.textContent = JSON.stringify([...document.images].map("
            " i => [i.naturalWidth, i.naturalHeight, i.width, i.height]));"
            " document.body.appendChild(p); });</script></body>",
        )
    )
    dom = _chromium(f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", probe.as_uri())
    sizes = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout).group(1))
    # The image decoded, and is shown at its own size (not stretched by the layout).
    assert sizes == [[360, 240, 360, 240]]
    screenshot = tmp_path / "shot.png"
    _chromium(
        f"--user-data-dir={tmp_path / 'profile-shot'}",
        f"--screenshot={screenshot}",
        "--window-size=1200,900",
        panoptic_report.as_uri(),
    )
    pixels = cv2.imread(str(screenshot))
    assert pixels is not None and pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 10  # not blank
    # The thumbnail's red outline made it to the screen.
    assert _red_pixels(pixels) > 20


def test_clean_dataset_says_no_findings(realdata: Path, tmp_path: Path) -> None:
    json_path, images = copy_panoptic_sample(realdata, tmp_path)
    report = tmp_path / "clean.html"
    assert main(["qa", str(json_path), "--images", str(images), "--html", str(report)]) == 0
    html = report.read_text()
    assert "no findings" in html and "<th>count</th>" not in html


def test_overlap_findings_name_the_categories(realdata: Path, tmp_path: Path) -> None:
    """The bed lies under the cats in image 39769: each overlap names both annotations' category names."""
    source = write_json(tmp_path / "instances.json", hf_polygons_with_an_empty_mask(realdata))
    names = {c["id"]: c["name"] for c in json.loads(source.read_text())["categories"]}
    report = tmp_path / "coco.html"
    assert main(["qa", str(source), "--target", "panoptic", "--html", str(report)]) == 1
    html = report.read_text()
    annotations = {a["id"]: a for a in json.loads(source.read_text())["annotations"]}
    overlaps = re.findall(r"annotations (\d+) \(([^)]*)\) and (\d+) \(([^)]*)\) share", html)
    assert overlaps
    for first, first_name, second, second_name in overlaps:
        assert first_name == names[annotations[int(first)]["category_id"]]
        assert second_name == names[annotations[int(second)]["category_id"]]


_PROBE = """<script>
window.addEventListener('load', () => {
  const facts = {
    text: document.body.innerText,
    viewport: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    titleRight: document.querySelector('h1').getBoundingClientRect().right,
  };
  const zoom = document.querySelector('a.zoom');
  const done = () => {
    const p = document.createElement('pre');
    p.id = 'probe';
    p.textContent = JSON.stringify(facts);
    document.body.appendChild(p);
  };
  if (!zoom) { done(); return; }
  zoom.querySelector('img').click();
  const full = document.querySelector('#viewer img');
  facts.viewerShown = full !== null;
  full.decode().then(() => {
    facts.full = [full.naturalWidth, full.naturalHeight];
    done();
  });
});
</script></body>"""


def _probe(report: Path, tmp_path: Path) -> dict:
    """The report's text and layout facts as headless Chromium lays it out, after a click on the first
    thumbnail."""
    probe = tmp_path / f"probe-{report.stem}.html"
    probe.write_text(report.read_text().replace("</body>", _PROBE))
    # The full-size image decodes asynchronously: on a busy machine the virtual time may run out first, so
    # the page gets a second, longer chance.
    for attempt, budget in enumerate((10_000, 60_000)):
        dom = _chromium(
            f"--user-data-dir={tmp_path / f'profile-{report.stem}-{attempt}'}",
            "--window-size=1000,800",
            f"--virtual-time-budget={budget}",
            "--dump-dom",
            probe.as_uri(),
        )
        found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
        if found:
            return json.loads(html_unescape(found.group(1)))
    raise AssertionError(dom.stderr[-2000:])


@pytest.mark.slow
def test_report_reads_well_in_headless_chromium(realdata: Path, tmp_path: Path) -> None:
    """Issue 16 item 9, as a browser shows it: a clean dataset says "no findings"; a very long input path
    wraps inside the window; a click on a thumbnail opens the overlay at the image's full size; an overlap
    names its categories. The screenshot is not blank."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    deep = tmp_path.joinpath(*["a_very_long_folder_name_without_any_space_in_it_at_all" * 2] * 4)
    deep.mkdir(parents=True)
    json_path, images = copy_panoptic_sample(realdata, deep)
    clean = deep / "clean.html"
    assert main(["qa", str(json_path), "--images", str(images), "--html", str(clean)]) == 0
    facts = _probe(clean, tmp_path)
    assert "no findings" in facts["text"]
    assert facts["titleRight"] <= facts["viewport"] and facts["scrollWidth"] <= facts["viewport"]

    source = write_json(tmp_path / "instances.json", hf_polygons_with_an_empty_mask(realdata))
    flagged = tmp_path / "flagged.html"
    hf_images = realdata / "hf_transformers_coco"
    assert main(
        ["qa", str(source), "--target", "panoptic", "--images", str(hf_images), "--html", str(flagged)]
    )
    facts = _probe(flagged, tmp_path)
    assert facts["viewerShown"] and facts["full"] == [640, 480]  # the image's own size, not the thumbnail's
    assert re.search(
        r"annotations \d+ \((cat|bed|couch|remote)\) and \d+ \((cat|bed|couch|remote)\) share", facts["text"]
    )
    screenshot = tmp_path / "flagged.png"
    _chromium(
        f"--user-data-dir={tmp_path / 'profile-shot2'}",
        f"--screenshot={screenshot}",
        "--window-size=1000,800",
        flagged.as_uri(),
    )
    pixels = cv2.imread(str(screenshot))
    assert pixels is not None and pixels.std() > 10
