"""The HTML report opens in headless Chromium with every table and image rendered.

Needs a Chromium binary (Debian's `chromium` package). Locally the test skips with a
message when none is found; in CI (CI=true) it installs the package first, bounded by a
timeout. ROBUSTFAIR_CHROMIUM may name the binary.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustfair.report.html import write_report
from robustfair.report.runs import load_runs
from test_report import make_run

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_TIMEOUT_S = 600
RENDER_TIMEOUT_S = 120

# Added to a copy of the report only: the report itself has no JavaScript.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var result = {
    images: images.length,
    decoded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    visible: images.filter(function (i) {
      var r = i.getBoundingClientRect(); return r.width > 100 && r.height > 100;
    }).length,
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("table tbody tr").length,
    headings: Array.prototype.map.call(document.querySelectorAll("h2"), function (h) { return h.textContent; }),
    height: document.documentElement.scrollHeight
  };
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    named = os.environ.get("ROBUSTFAIR_CHROMIUM")
    if named:
        return named if shutil.which(named) else None
    for name in CANDIDATES:
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI") == "true" and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=INSTALL_TIMEOUT_S)
            subprocess.run(
                ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                env=env,
                capture_output=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        except (subprocess.TimeoutExpired, OSError):
            return None
        return next((shutil.which(n) for n in CANDIDATES if shutil.which(n)), None)
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "headless Chromium not found (install Debian's `chromium` package, or set "
            "ROBUSTFAIR_CHROMIUM); CI installs it when CI=true"
        )
    return binary


def headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)


def test_report_renders_in_headless_chromium_with_every_table_and_image(chromium, tmp_path):
    make_run(tmp_path / "runs", "pgd", analysis=True, extra=True)
    make_run(tmp_path / "runs", "trades", method="trades")
    report = write_report(load_runs([str(tmp_path / "runs" / "*")]), tmp_path / "report.html")
    text = report.read_text()
    expected_images = len(re.findall(r"<img ", text))
    expected_tables = text.count("<table>")
    expected_rows = text.count("<tr>") - text.count("<thead><tr>")
    assert expected_images == 1 + 2 * 4 + 2 and expected_tables >= 8

    probe_page = tmp_path / "probe.html"
    probe_page.write_text(text.replace("</body>", PROBE + "</body>"))
    done = headless(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no probe result in Chromium's DOM (stderr: {done.stderr[-500:]})"
    seen = json.loads(html.unescape(match.group(1)))
    assert seen["images"] == expected_images
    assert seen["decoded"] == expected_images, "an embedded image failed to decode"
    assert seen["visible"] == expected_images, "an image is laid out smaller than 100 px"
    assert seen["tables"] == expected_tables and seen["rows"] == expected_rows > 15
    assert seen["headings"][:4] == ["Runs", "Summary", "Per-class errors", "Sanity checks"]

    shot = tmp_path / "report.png"
    height = min(int(seen["height"]) + 50, 16000)
    done = headless(
        chromium, tmp_path / "profile", f"--screenshot={shot}", f"--window-size=1280,{height}", report.as_uri()
    )
    assert shot.is_file(), f"Chromium wrote no screenshot (stderr: {done.stderr[-500:]})"
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[0] == height and pixels.shape[1] == 1280

    def count(rgb, tolerance=12) -> int:
        return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum())

    # The figures are drawn: matplotlib's first two colours (bars), the heatmaps' dark blue,
    # and the tables' header shading, all in quantity.
    assert count((31, 119, 180)) > 5000  # C0 bars and lines
    assert count((255, 127, 14)) > 5000  # C1 bars
    assert count((8, 48, 107), 30) > 500  # darkest "Blues" cells
    assert count((242, 244, 247), 2) > 5000  # table headers
