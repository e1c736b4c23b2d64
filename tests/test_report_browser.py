"""The HTML report in a real headless browser (Chromium): the table, the charts and the sample grids
render and nothing links out of the file; a screenshot is kept as a test artifact
(``.test-artifacts/report.png``, git-ignored). Skipped where no Chromium is installed (the README
says how to install it; CI does)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from suite_helpers import REPO, bench, quickstart_variant

CHROMIUM = next((shutil.which(c) for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const arrows = [...document.querySelectorAll('th')].filter(t => /[\u2191\u2193]/.test(t.textContent)).length;
  document.title = `imgs:${ok}/${imgs.length};tables:${document.querySelectorAll('table').length}` +
    `;dir:${arrows};best:${document.querySelectorAll('td.best').length}` +
    `;wide:${Math.max(...[...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().width))}` +
    `;cols:${[...document.querySelectorAll('figcaption')].filter(f => f.textContent.startsWith('columns:')).length}`;
});</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")
def test_html_report_renders_in_chromium(tmp_path):
    suite = quickstart_variant(tmp_path, suite={"name": "browser", "tasks": ["photo2depth"]},
                               metrics={"photo2depth": ["depth"]}, columns={"photo2depth": ["rel", "rms"]},
                               rows=[{"name": "4-Layer Concat", "discriminator": "patchgan"},
                                     {"name": "Fusion + SN", "discriminator": "fusion4-sn"}])
    out = tmp_path / "out"
    bench("run", str(suite), "--profile", "tiny", "--seeds", "2", "--out", str(out), "--no-progress",
          "--device", "cpu", check=True)
    report = (out / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:|#)', report), "the report links outside itself"
    probe = tmp_path / "probe.html"
    probe.write_text(report.replace("</body>", PROBE))
    profile = tmp_path / "chrome-profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title, dom.stderr[-500:]
    imgs, tables, arrows, best, _, cols = re.fullmatch(
        r"imgs:(\d+/\d+);tables:(\d+);dir:(\d+);best:(\d+);wide:([\d.]+);cols:(\d+)", title.group(1)).groups()
    assert int(cols) == 2                            # a labelled side-by-side picture per seed
    assert int(arrows) == 2                          # rel and rms say "lower is better"
    import pandas as pd
    board = pd.read_csv(out / "leaderboard.csv")
    ranked = board[(board["status"] == "ok") & board["metric"].isin(["rel", "rms"])]
    assert int(best) == ranked["metric"].nunique()    # one best cell per column with a ranked (non-degenerate) row
    ok, total = map(int, imgs.split("/"))
    assert total >= 6 and ok == total, f"{ok} of {total} images rendered"   # chart, losses, 2 grids, 2 side by side
    assert int(tables) >= 1
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1800",
                    f"--screenshot={shot}", (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    keep = Path(os.environ.get("BENCH_TEST_ARTIFACTS", REPO / ".test-artifacts"))
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shot, keep / "report.png")
