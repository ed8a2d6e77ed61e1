"""Screenshots of a run's pages with headless Chromium, so the look of the reports can be reviewed.

    python scripts/screenshots.py outputs/smoke docs/screenshots     (or: make screenshots RUN=smoke)

Writes ``index.png`` and one ``NN_name.png`` per HTML report found in the run folder (the top of
each page: the summary box, the contents and the first sections). Needs a Chromium binary
(``apt-get install chromium`` on Debian/Ubuntu); exits 2 naming that fix when none is found.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """Returns the first Chromium-family executable on PATH, or None."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(browser: str, page: Path, out: Path, width: int = 1280, height: int = 1500) -> Path:
    """Renders ``page`` (a local HTML file) to the PNG ``out`` with headless Chromium.

    Raises:
        RuntimeError: Chromium failed or wrote no image (its stderr is in the message).
    """
    with tempfile.TemporaryDirectory() as profile:  # a throw-away profile: no state between shots
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--screenshot={out}", page.resolve().as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium could not render {page}: exit {res.returncode}\n{res.stderr[-2000:]}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder with index.html, e.g. outputs/smoke")
    parser.add_argument("out_dir", type=Path, help="folder for the PNG files")
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("no Chromium found (looked for " + ", ".join(BROWSERS) + "): apt-get install chromium", file=sys.stderr)
        return 2
    index = args.run_dir / "index.html"
    if not index.is_file():
        print(f"{index} does not exist: run the pipeline first (make run)", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pages = [index] + sorted(p for p in args.run_dir.glob("[0-9][0-9]_*.html") if not p.name.endswith(".code.html"))
    for page in pages:
        out = screenshot(browser, page, args.out_dir / f"{page.stem}.png",
                         height=700 if page == index else 1500)
        print(f"{out}  ({out.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
