"""The documentation's blocks, run end to end (slow: ``pytest -m slow tests/test_docs_run.py``).

Every ``cfexplain`` command line and every Python block of README.md and docs/*.md runs, as a
reader would paste them: in one working folder, page by page in the order ``test_docs`` reads
them (README first), a page's Python blocks one after another in one namespace. The folder starts
with what the docs tell a newcomer to make first: the demo's outputs (``cfexplain demo --out
demo-out``) and the example photos (``cfexplain photos --out my_photos``).

A block that cannot run here says so on the line above its fence, with its reason::

    <!-- not run: needs a StyleGAN2 checkpoint (ffhq.pkl) -->

(real StyleGAN2, BiSeNet or FAN weights, a GPU, or the reader's own model). A marker without a
reason fails, and so does a runnable block that raises or a command line that does not exit 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_docs import BLOCKS, PAGES, ROOT, _command_lines

pytestmark = pytest.mark.slow

SKIP = re.compile(r"<!--\s*not run:(.*?)-->\s*$")


def _reason_not_run(page: Path, line: int) -> str | None:
    """The reason on the line above the fence at ``line`` of ``page``, or None if it runs."""
    above = page.read_text(encoding="utf-8").splitlines()[line - 2] if line > 1 else ""
    marker = SKIP.search(above)
    return marker.group(1).strip() if marker else None


def _runnable(language: str, text: str) -> bool:
    return language == "python" or (language in ("bash", "yaml", "") and bool(_command_lines(text)))


def _plan() -> list[tuple[Path, int, str, str, str | None]]:
    """``(page, line, language, text, reason not run or None)`` of every block that could run."""
    plan = []
    for where, language, text in BLOCKS:
        name, line = where.rsplit(":", 1)
        page = ROOT / name
        if _runnable(language, text):
            plan.append((page, int(line), language, text, _reason_not_run(page, int(line))))
    return plan


PLAN = _plan()


def test_every_block_not_run_says_why():
    unexplained = [f"{page.relative_to(ROOT)}:{line}" for page, line, _, _, reason in PLAN if reason == ""]
    assert not unexplained, f"'not run' markers without a reason: {unexplained}"
    assert sum(reason is None for *_, reason in PLAN) >= 10  # most of the docs do run


def _cli(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cfexplain", *args], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=1800)


RAN: set[tuple[str, ...]] = set()
"""Command lines already run in the folder (the README and the quickstart both run the demo)."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A working folder with the demo's outputs and the example photos, as the docs start."""
    where = tmp_path_factory.mktemp("docs")
    for args in (["demo", "--out", "demo-out"], ["photos", "--out", "my_photos"]):
        done = _cli(args, where)
        assert done.returncode == 0, done.stderr[-3000:]
        RAN.add(tuple(args))
    return where


def _page_script(blocks: list[tuple[int, str]]) -> str:
    """One script running a page's Python blocks in order, naming the block that fails."""
    parts = ["import sys"]
    for line, text in blocks:
        parts.append(f"sys.stderr.write('--- block at line {line}\\n')")
        parts.append(text)
    return "\n".join(parts)


@pytest.mark.parametrize("page", [p for p in PAGES if any(q == p and r is None for q, *_, r in PLAN)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_page_runs(page, folder):
    """The page's command lines, then its Python blocks (in one namespace, in order)."""
    for _, line, language, text, reason in (step for step in PLAN if step[0] == page):
        if reason is not None:
            continue
        if language != "python":
            for argv in _command_lines(text):
                if tuple(argv) in RAN:
                    continue
                done = _cli(argv, folder)
                assert done.returncode == 0, f"{page.name}:{line} `cfexplain {' '.join(argv)}`\n{done.stderr[-3000:]}"
                RAN.add(tuple(argv))
    python = [(line, text) for _, line, language, text, reason in (s for s in PLAN if s[0] == page)
              if language == "python" and reason is None]
    if python:
        done = subprocess.run([sys.executable, "-c", _page_script(python)], cwd=folder, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"},
                              timeout=3600)
        assert done.returncode == 0, f"{page.name}\n{done.stderr[-4000:]}"
