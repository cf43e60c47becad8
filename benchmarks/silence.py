"""The longest silence of a command: how long a user watches an unchanging terminal.

Runs each command in a fresh process, reads its stdout and stderr as they are written (progress
bars included), and reports the longest time between two writes, with the last text before it and
the first after it. Commands:

* **cold demo**: ``cfexplain demo`` with an empty cache folder (``CFEXPLAIN_CACHE``; the wheels
  are read from the local wheel cache, so the download is not counted);
* **cold audit**: ``cfexplain audit`` of the zoo gender classifier on 32 faces with the demo's
  subspaces, with an empty model cache (the models are converted first);
* **warm audit**: the same with the cache the cold audit filled.

Usage::

    python benchmarks/silence.py [--threads 2] [--faces 32] [--commands cold-demo cold-audit warm-audit]

Prints a table and writes ``benchmarks/results/silence.json``. Target: no silence over ~2 s
beyond the first second (Python and torch starting).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = ("cold-demo", "cold-audit", "warm-audit")


def watch(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run ``argv``; the longest gap between two writes to its stdout or stderr, and around it."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    selector = selectors.DefaultSelector()
    for stream in (process.stdout, process.stderr):
        selector.register(stream, selectors.EVENT_READ)
    last, text, longest = start, "", {"seconds": 0.0, "before": "", "after": "", "at": 0.0}
    open_streams = 2
    while open_streams:
        for key, _ in selector.select():
            chunk = os.read(key.fileobj.fileno(), 65536)
            now = time.perf_counter()
            if not chunk:
                selector.unregister(key.fileobj)
                open_streams -= 1
                continue
            written = chunk.decode("utf-8", "replace")
            if now - last > longest["seconds"]:
                longest = {"seconds": now - last, "before": _tail(text), "after": _head(written),
                           "at": last - start}
            last, text = now, (text + written)[-2000:]
    process.wait()
    end = time.perf_counter()
    if end - last > longest["seconds"]:
        longest = {"seconds": end - last, "before": _tail(text), "after": "(exit)", "at": last - start}
    return {"exit": process.returncode, "wall_s": round(end - start, 1), "longest_silence_s": round(longest["seconds"], 1),
            "silence_starts_at_s": round(longest["at"], 1), "before": longest["before"], "after": longest["after"]}


def _tail(text: str) -> str:
    lines = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1].strip()[:120] if lines else "(start)"


def _head(text: str) -> str:
    lines = [line for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[0].strip()[:120] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="2")
    parser.add_argument("--faces", type=int, default=32)
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    options = parser.parse_args()
    from cfexplain.zoo import cache_dir

    wheels = str(cache_dir() / "wheels")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        subspaces = cache_dir() / "demo"
        found = sorted(subspaces.glob("subspaces-*/subspaces.json"), key=lambda path: path.stat().st_mtime)
        for name in options.commands:
            cache = scratch / ("cache-" + name.split("-")[1])  # the warm audit reuses the cold audit's
            if name.startswith("cold") and cache.exists():
                shutil.rmtree(cache)
            env = {**os.environ, "CFEXPLAIN_CACHE": str(cache), "CFEXPLAIN_WHEEL_DIR": wheels, "PYTHONUNBUFFERED": "1"}
            base = [sys.executable, "-m", "cfexplain"]
            if name == "cold-demo":
                argv = base + ["demo", "--out", str(scratch / "demo"), "--threads", options.threads]
            else:
                if not found:
                    raise SystemExit("run `cfexplain demo` once first: the audits use the demo's subspaces")
                argv = base + ["audit", "--generator", "zoo:dcgan", "--classifier", "zoo:gender", "--subspaces",
                               str(found[-1].parent), "--faces", str(options.faces), "--out", str(scratch / name),
                               "--threads", options.threads]
            result = {"command": name, **watch(argv, env, scratch)}
            rows.append(result)
            print(f"{name}: exit {result['exit']}, {result['wall_s']} s, longest silence {result['longest_silence_s']} s "
                  f"at {result['silence_starts_at_s']} s after «{result['before']}»", flush=True)
    print("| command | wall time | longest silence | starts at | last output before it |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['command']} | {row['wall_s']} s | {row['longest_silence_s']} s | {row['silence_starts_at_s']} s | "
              f"{row['before']} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "silence.json").write_text(json.dumps({"threads": options.threads, "faces": options.faces, "rows": rows},
                                                     indent=2))
    print(f"wrote {RESULTS / 'silence.json'}")


if __name__ == "__main__":
    main()
