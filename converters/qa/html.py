"""The HTML report: counts by code, then every flagged image worst first, with an overlay thumbnail.

A thumbnail shows the image (when --images finds it; a dark canvas otherwise) with every segment filled in a
colour and the segments the findings name outlined in red; a click on it opens the same overlay at full size.
The pictures are those the QA run drew as it checked the images (`check(..., pictures=True)`), so the report
never reads the input again. They are embedded as base64: the report is one self-contained file.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from converters import naming
from converters.qa.findings import CHECKS, Finding, Severity
from converters.qa.overlay import Pictures
from converters.qa.report import group_title, summary, worst_images
from converters.qa.run import MAX_PICTURES, QAResult


def write_html(result: QAResult, target: Path) -> None:
    """Write the report of a run made with `pictures=True` into `target` (a path reserved in the command's
    `Outputs`)."""
    groups = [item for item in worst_images(result.findings) if item[0][0] != "dataset"]
    target.write_text(_document(result, groups, groups[:MAX_PICTURES]))


# -- document --------------------------------------------------------------------------------------

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
.error { color: #b00020; font-weight: 600; } .warning { color: #a05a00; } .info { color: #555; }
.image { display: flex; align-items: flex-start; gap: 1em; margin: 1em 0; padding-top: 1em; }
.image { border-top: 1px solid #ddd; }
.image h3 { overflow-wrap: anywhere; }
.image img { flex: none; border: 1px solid #999; }
a.zoom { flex: none; cursor: zoom-in; }
#viewer { position: fixed; inset: 0; background: rgba(0, 0, 0, 0.85); overflow: auto; cursor: zoom-out; }
#viewer img { display: block; margin: 1em auto; border: none; }
"""

# A click on a thumbnail shows its full-size overlay above the page; a click on that closes it. The full-size
# image is made only then, so the page's images are the thumbnails alone.
_VIEWER_SCRIPT = """<script>
document.addEventListener('click', (event) => {
  const old = document.getElementById('viewer');
  if (old) { old.remove(); return; }
  const zoom = event.target.closest('a.zoom');
  if (!zoom) return;
  event.preventDefault();
  const viewer = document.createElement('div');
  viewer.id = 'viewer';
  const image = document.createElement('img');
  image.alt = zoom.dataset.title;
  image.src = zoom.dataset.full;
  viewer.appendChild(image);
  document.body.appendChild(viewer);
});
</script>"""


def _findings_table(findings: list[Finding]) -> str:
    rows = []
    for finding in findings:
        severity = finding.severity.label
        rows.append(
            f'<tr><td class="{severity}">{severity}</td><td><code>{finding.code}</code></td>'
            f"<td>{html.escape(finding.place())}</td><td>{html.escape(finding.message)}</td></tr>"
        )
    return (
        "<table><tr><th>severity</th><th>code</th><th>where</th><th>message</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _document(result: QAResult, groups: list[Any], shown: list[Any]) -> str:
    counts = summary(result)
    parts = [
        f"<h1>QA of {html.escape(str(result.input))}</h1>",
        f"<p>{html.escape(result.format)}: {result.checked} checked; "
        + ", ".join(f'<span class="{label}">{n} {label}</span>' for label, n in counts["by_severity"].items())
        + "</p>",
    ]
    if not result.findings:
        parts.append('<p class="clean">no findings</p>')
    else:
        parts.append("<table><tr><th>count</th><th>severity</th><th>code</th><th>meaning</th></tr>")
        for code, n in counts["by_code"].items():
            check = CHECKS[code]
            label = check.severity.label
            parts.append(
                f'<tr><td>{n}</td><td class="{label}">{label}</td><td><code>{code}</code></td>'
                f"<td>{html.escape(check.explanation)}</td></tr>"
            )
        parts.append("</table>")
    dataset_level = [f for f in result.findings if f.image_key()[0] == "dataset"]
    if dataset_level:
        parts.append("<h2>Dataset</h2>" + _findings_table(dataset_level))
    if groups:
        more = f" (the worst {len(shown)} of {len(groups)})" if len(shown) < len(groups) else ""
        parts.append(f"<h2>Flagged images, worst first{more}</h2>")
    for key, findings in shown:
        errors = sum(1 for f in findings if f.severity == Severity.ERROR)
        title = html.escape(group_title(result, key, findings))
        drawn = result.pictures.get(key)
        picture = zoomable_picture(drawn, title) if drawn is not None else ""
        counted = f"{naming.plural(errors, 'error')}, {naming.plural(len(findings), 'finding')}"
        parts.append(
            f'<div class="image">{picture}<div>'
            f"<h3>{title}: {counted}</h3>"
            f"{_findings_table(findings)}</div></div>"
        )
    return page(f"segassist QA: {result.input.name}", parts)


def page(title: str, parts: list[str]) -> str:
    """A self-contained report page (also the eval report's): the style, the body `parts` (HTML), the
    full-size viewer."""
    head = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
    return "\n".join(
        [f"{head}<style>{_STYLE}</style></head><body>", *parts, _VIEWER_SCRIPT, "</body></html>\n"]
    )


def zoomable_picture(drawn: Pictures, title: str) -> str:
    """The thumbnail; a click opens the full-size overlay (`title`: already escaped)."""
    thumbnail, full = (
        base64.b64encode(data).decode("ascii") for data in (drawn.thumbnail_png, drawn.full_jpeg)
    )
    return (
        f'<a class="zoom" href="#" title="click for the full-size overlay" data-title="{title}" '
        f'data-full="data:image/jpeg;base64,{full}">'
        f'<img alt="{title}" src="data:image/png;base64,{thumbnail}"></a>'
    )
