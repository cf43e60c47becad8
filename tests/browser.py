"""Headless Chromium for the report tests: found on the PATH, or installed from Debian's package.

The tests that use it must run in CI, so a missing browser is installed (``apt-get install
chromium``, as root or through password-less sudo) rather than skipped; where that is impossible
the test fails with the command to run.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-extensions", "--hide-scrollbars", "--mute-audio")


def _installed() -> str | None:
    explicit = os.environ.get("CFEXPLAIN_CHROMIUM")
    if explicit:
        return explicit
    return next((path for path in map(shutil.which, NAMES) if path), None)


def _install() -> str:
    if shutil.which("apt-get") is None:
        raise RuntimeError("no Chromium found and no apt-get to install it: install Chromium, or name it in CFEXPLAIN_CHROMIUM")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise RuntimeError("no Chromium found; install it with `sudo apt-get install chromium` (not root here, no sudo)")
        prefix = ["sudo", "-n"]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=environment, capture_output=True).returncode != 0:
        subprocess.run([*prefix, "apt-get", "update"], env=environment, capture_output=True)
        done = subprocess.run(install, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`apt-get install chromium` failed:\n{done.stderr[-2000:]}")
    path = _installed()
    if path is None:
        raise RuntimeError("apt-get installed chromium but no browser executable is on the PATH")
    return path


def chromium() -> str:
    """The path of a Chromium executable, installing Debian's ``chromium`` package if needed."""
    return _installed() or _install()


def dump_dom(browser: str, page: Path, *, wait_ms: int = 5000, width: int = 1280) -> str:
    """The page's DOM after loading (and running its scripts) in a window ``width`` pixels wide,
    serialised by the browser."""
    done = subprocess.run([browser, *FLAGS, f"--window-size={width},1000", f"--virtual-time-budget={wait_ms}",
                           "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def screenshot(browser: str, page: Path, out: Path, *, width: int = 1280, height: int = 2400) -> Path:
    """A PNG screenshot of the page at the given window size."""
    done = subprocess.run([browser, *FLAGS, f"--window-size={width},{height}", f"--screenshot={out}",
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120, cwd=out.parent)
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium --screenshot failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return out


PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const text = (selector) => [...document.querySelectorAll(selector)].map((e) => e.textContent.trim());
  const probe = {
    images: images.length,
    decoded: images.filter((i) => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
    rendered: images.filter((i) => i.getBoundingClientRect().width > 0).length,
    summary_rows: [...document.querySelectorAll("table.summary tbody tr")].map((r) => r.dataset.semantic),
    top: text(".top-semantic"),
    headings: text("h2"),
    bars: [...document.querySelectorAll(".bar-row")].map((r) => r.dataset.semantic),
    provenance: document.querySelector("#provenance pre") ? document.querySelector("#provenance pre").textContent : "",
    overflow: document.documentElement.scrollWidth > window.innerWidth + 1,
    width: window.innerWidth,
    clipped: [...document.querySelectorAll("table")].filter((t) => {
      const box = t.closest(".wide");
      const right = t.getBoundingClientRect().right;
      return box ? (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== "auto")
                 : right > window.innerWidth + 1;
    }).length,
  };
  document.body.setAttribute("data-probe", JSON.stringify(probe));
});
</script>"""


def probe(browser: str, report: Path, work: Path, *, width: int = 1280) -> dict:
    """Load a copy of ``report`` with :data:`PROBE` appended in a window ``width`` pixels wide and
    return what it found."""
    page = work / f"probe-{report.name}"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    found = re.search(r'data-probe="([^"]*)"', dump_dom(browser, page, width=width))
    if found is None:
        raise AssertionError("the page's load event never ran the probe (the browser did not finish loading it)")
    return json.loads(html.unescape(found.group(1)))
