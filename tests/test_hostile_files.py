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
from fuzz_documents import run as run_documents  # noqa: E402
from fuzz_loaders import PROBLEMS as NEVER  # noqa: E402
from fuzz_loaders import hostile_streams, load_outcome, run  # noqa: E402


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


def test_structure_aware_mutations_end_cleanly(tmp_path):
    """Opcode arguments (dtype codes, globals, shapes, strides) and torch zip entries changed."""
    rows = run(120, seed=4, timeout=20, folder=tmp_path, family="structured")
    problems = [row for row in rows if row["outcome"] in NEVER]
    assert not problems, problems[:5]
    assert sum(row["outcome"] == "clean error" for row in rows) > len(rows) / 4


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


def test_torch_files_whose_tensors_outgrow_their_storage_are_refused_before_use(tmp_path):
    """Zero strides make a 24 KB file claim gigabytes; every torch file path refuses it by name."""
    import torch

    import cfexplain
    from cfexplain import InversionResult, SubspaceSet
    from cfexplain._torch_files import read_torch_file

    huge = torch.zeros(1).expand(4096, 4096, 3, 3)  # 150 M elements on a storage of one
    path = tmp_path / "rosinality.pt"
    torch.save({"g_ema": {"conv1.conv.weight": huge}, "latent_avg": torch.zeros(512)}, path)
    with pytest.raises(CorruptCheckpointError, match="rosinality.pt.*claims 150994944 elements on a storage of 1"):
        cfexplain.load_generator(path)
    sparse = tmp_path / "sparse.pt"
    torch.save({"w": torch.eye(3).to_sparse()}, sparse)
    with pytest.raises(CorruptCheckpointError, match="sparse.pt.*dense tensors only"):
        read_torch_file(sparse, sparse)
    inversion = tmp_path / "inversion.pt"
    torch.save({"format": 1, "codes": huge}, inversion)
    with pytest.raises(CorruptCheckpointError, match="inversion file.*claims"):
        InversionResult.load(inversion)
    from cfexplain.subspaces.core import Subspace

    folder = SubspaceSet([Subspace("a", torch.eye(4)[:, :2], torch.ones(2), "z", (4,))]).save(tmp_path / "subspaces")
    saved = torch.load(folder / "bases.pt", weights_only=True)
    torch.save({name: huge for name in saved}, folder / "bases.pt")
    with pytest.raises(CorruptCheckpointError, match="bases.pt.*claims 150994944 elements"):
        SubspaceSet.load(folder)


@pytest.mark.parametrize("text, why", [(b'{"format_version": \xff\xfe}', "UnicodeDecodeError"),
                                       (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
                                       (b'{"format_version": ' + b"9" * 5000 + b"}", "digits")])
def test_artefact_json_that_is_damaged_is_a_clean_error(tmp_path, text, why):
    from cfexplain import SubspaceSet

    folder = tmp_path / "subspaces"
    folder.mkdir()
    (folder / "subspaces.json").write_bytes(text)
    (folder / "bases.pt").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match=f"subspaces.json: not a readable .*{why}"):
        SubspaceSet.load(folder)


def test_resealed_documents_and_configs_of_the_wrong_shape_end_cleanly(tmp_path):
    """Structure-aware mutations (an entry deleted or retyped, the manifest recomputed; a config
    value of another type; damaged text): a clean error naming the file, or a document still valid."""
    rows = run_documents(45, seed=2, timeout=60, folder=tmp_path)
    problems = [row for row in rows if row["outcome"] in NEVER]
    assert not problems, problems[:5]
    for family in ("documents", "configs"):
        assert sum(row["outcome"] == "clean error" for row in rows if row["family"] == family) > 10
