"""report.html as a browser shows it: headless Chromium renders the page of the tiny run.

Checks what parsing the HTML cannot: every embedded image decodes (its natural size, read
with JavaScript over the DevTools protocol, is the size in its PNG header) and is painted,
the page has its sections and results table, and the full-page screenshot is not blank.
Without Chromium the test skips, except under ``CI``, where it fails (``.ci/run`` installs
Debian's ``chromium`` package first).
"""

import base64
import io
import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from kelp.layout import RunLayout
from tests.pipeline._chromium import WIDTH, find_chromium, render

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TinyRun = tuple[Path, dict[str, object]]

MISSING = "chromium not installed: apt-get install chromium (or run .ci/run, which installs it)"
SECTIONS = (
    "Stages",
    "Results: out-of-fold global Dice on the same tiles",
    "Threshold sweep",
    "CNN training curves",
    "Tree feature importance (fold 0)",
    "Predictions across the Dice range (out-of-fold)",
)

# Evaluated after the load event; returns what the page shows, as JSON.
INSPECT = """(async () => {
  const images = [...document.images];
  const decoded = await Promise.all(
    images.map((img) => img.decode().then(() => "", (e) => String(e))));
  return {
    images: images.map((img, i) => {
      const r = img.getBoundingClientRect();
      return {alt: img.alt, complete: img.complete, decodeError: decoded[i],
              naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
              box: [r.left + scrollX, r.top + scrollY, r.width, r.height]};
    }),
    headings: [...document.querySelectorAll("h1, h2")].map((h) => h.textContent),
    tables: [...document.querySelectorAll("table")].map((t) => ({
      header: [...t.tHead.rows[0].cells].map((c) => c.textContent),
      rows: [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent)),
      best: [...t.tBodies[0].rows].findIndex((r) => r.classList.contains("best")),
    })),
  };
})()"""


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _png_sizes(page: str) -> list[tuple[int, int]]:
    """(width, height) from the IHDR chunk of each embedded PNG, in document order."""
    sizes = []
    for data in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page):
        header = base64.b64decode(data[:64])
        assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
        sizes.append(struct.unpack(">II", header[16:24]))
    return sizes


def _assert_painted(pixels: np.ndarray, what: str) -> None:
    """Not blank: many colours, real contrast, and not (nearly) all white."""
    rgb = pixels.astype(np.uint32)
    colours = len(np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]))
    inked = float((pixels.min(axis=2) < 240).mean())
    assert colours > 16, f"{what}: only {colours} distinct colours"
    assert pixels.std() > 10, f"{what}: almost uniform (std {pixels.std():.1f})"
    assert inked > 0.01, f"{what}: {inked:.2%} of pixels not white"


def test_report_renders_in_headless_chromium(request: pytest.FixtureRequest) -> None:
    chromium = find_chromium()
    if chromium is None:  # checked before the run fixture is built, so a skip costs nothing
        if _in_ci():
            pytest.fail(f"{MISSING}; CI is set, so the browser test must run", pytrace=False)
        pytest.skip(MISSING)
    tiny_run: TinyRun = request.getfixturevalue("tiny_run")
    run = Path(str(tiny_run[1]["run_dir"]))
    report = RunLayout.of(run).report  # as `kelp run` wrote it (write_report)
    html = report.read_text()

    page = render(chromium, report.as_uri(), INSPECT)
    shown: dict[str, Any] = page.value

    # Every image decoded, at the size its PNG declares, and laid out on the page.
    sizes = _png_sizes(html)
    assert len(sizes) >= 1 + 3 + 2 + 1  # sweep, 3 CNN curves, 2 importances, grid
    assert len(shown["images"]) == len(sizes)
    for image, size in zip(shown["images"], sizes, strict=True):
        natural = (image["naturalWidth"], image["naturalHeight"])
        assert image["complete"] and not image["decodeError"], image
        assert natural == size, f"{image['alt']}: decoded at {natural}, its PNG says {size}"
        assert image["box"][2] > 50 and image["box"][3] > 50, image

    # The sections, and the results table with one row per compared model.
    assert shown["headings"][0] == "kelp run tiny"
    assert [h for h in shown["headings"] if h in SECTIONS] == list(SECTIONS)
    comparison = json.loads((run / "stacking" / "manifest.json").read_text())["comparison"]
    results = next(t for t in shown["tables"] if t["header"][:2] == ["model", "nested"])
    assert [row[0] for row in results["rows"]] == list(comparison)
    assert results["best"] >= 0  # the best row is highlighted

    # The screenshot is the whole page and not blank, nor is any image's area within it.
    shot = Image.open(io.BytesIO(page.screenshot))
    assert shot.format == "PNG" and shot.width == WIDTH
    pixels = np.asarray(shot.convert("RGB"))
    _assert_painted(pixels, "screenshot")
    for image in shown["images"]:
        x, y, w, h = (round(v) for v in image["box"])
        assert y + h <= shot.height, f"{image['alt']} lies below the screenshot"
        _assert_painted(pixels[y : y + h, x : x + w], f"{image['alt']} as painted")
