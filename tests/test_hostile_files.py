"""Damaged and hostile checkpoint files: bounded time, a clean error that names the file.

A few hundred mutations of the res32 fixtures and the hand-made hostile streams of
``benchmarks/fuzz_loaders.py`` (which runs ≥ 10 000 as a benchmark), each loaded in a forked child
with a watchdog.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cfexplain.errors import CorruptCheckpointError
from cfexplain.generators.checkpoints._safe_pickle import PickleLimits, safe_load_pickle, scan_pickle

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fuzz_loaders import hostile_streams, load_outcome, run  # noqa: E402

NEVER = ("crash", "hang", "unnamed error")


@pytest.mark.parametrize("name, data", [s for s in hostile_streams() if s[1]], ids=[s[0] for s in hostile_streams() if s[1]])
def test_hostile_streams_are_refused_by_name(tmp_path, name, data):
    path = tmp_path / "hostile.pkl"
    path.write_bytes(data)
    outcome, detail = load_outcome(path, None, timeout=20)
    assert outcome == "clean error", detail


def test_a_few_hundred_mutations_end_cleanly(tmp_path):
    rows = run(240, seed=1, timeout=20, folder=tmp_path)
    problems = [row for row in rows if row["outcome"] in NEVER]
    assert not problems, problems[:5]
    assert sum(row["outcome"] == "clean error" for row in rows) > len(rows) / 3  # the mutations do damage


def test_scan_budgets():
    deep = b"\x80\x04" + b"(" * 50 + b"N" + b"t" * 50 + b"."
    scan_pickle(deep)
    with pytest.raises(CorruptCheckpointError, match="nests deeper than 10 marks"):
        scan_pickle(deep, PickleLimits(max_depth=10))
    with pytest.raises(CorruptCheckpointError, match="more than 20 opcodes"):
        scan_pickle(deep, PickleLimits(max_opcodes=20))
    memo = b"\x80\x04N" + b"\x94" * 30 + b"."
    with pytest.raises(CorruptCheckpointError, match="more than 10 memo entries"):
        scan_pickle(memo, PickleLimits(max_memo=10))
    with pytest.raises(CorruptCheckpointError, match="more than 10 memo entries"):  # a stream, scanned in place
        scan_pickle(io.BytesIO(memo), PickleLimits(max_memo=10))
    with pytest.raises(CorruptCheckpointError, match="truncated or damaged"):
        safe_load_pickle(io.BytesIO(b"\x80\x04B\xff\xff\xff\x0fabc."))
