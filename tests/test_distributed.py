"""Distributed learn and audit: two gloo processes on the CPU give what one process gives, and a
killed rank's rerun redoes only its own unfinished work."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from cfexplain.audit import AuditResult, audit
from cfexplain.distributed import SINGLE_PROCESS, Ranks
from cfexplain.errors import InputError
from cfexplain.subspaces import learn_subspaces
from synthetic import planted_rule_setting, stylegan3_setting

AUDIT = dict(faces=11, seed=1, unit="latent", budget=4.0, batch_size=5, progress=False)
LEARN = dict(space="z", n_samples=6, batch_size=2, method="randomized", seed=3, progress=False)
STYLEGAN3_AUDIT = dict(faces=10, seed=2, controls=2, batch_size=2, joint_steps=5, ig_steps=4, image_samples=2,
                       progress=False)


def _worker(rank: int, folder: str, job: str) -> None:
    """One rank of a 2-process gloo run: does ``job`` and pickles what it returned to ``folder``."""
    import torch.distributed as dist


    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store-{job}", rank=rank, world_size=2)
    if job == "stylegan3":
        generator, classifier, subspaces = stylegan3_setting()
        result = audit(generator, classifier, subspaces, distributed=True, **STYLEGAN3_AUDIT)
        Path(folder, f"{job}-{rank}.pkl").write_bytes(pickle.dumps({"audit": None if result is None else _content(result)}))
        dist.destroy_process_group()
        return
    generator, classifier, subspaces, semantics = planted_rule_setting()
    from cfexplain.counterfactual.explainer import CounterfactualExplainer

    calls = {"chunks": 0}
    search_chunk = CounterfactualExplainer._search_chunk

    def counted(self, chunk, records):
        calls["chunks"] += 1
        if job == "fail" and rank == 1 and calls["chunks"] == 2:
            _kill_once_rank_0_is_done_searching(folder)
        return search_chunk(self, chunk, records)

    CounterfactualExplainer._search_chunk = counted
    out: dict = {}
    if job == "learn+audit":
        learned = learn_subspaces(generator, semantics, distributed=True, **LEARN)
        out["learned"] = {name: (learned[name].basis, learned[name].eigenvalues,
                                 learned[name].provenance["specificity"]) for name in learned}
        result = audit(generator, classifier, subspaces, semantics=semantics, distributed=True, **AUDIT)
        out["audit"] = None if result is None else _content(result)
    else:  # "fail" (rank 1 dies in its second search batch) or "resume", both with checkpoints
        result = audit(generator, classifier, subspaces, semantics=semantics, distributed=True,
                       checkpoint_dir=f"{folder}/checkpoints", **AUDIT)
        out["audit"] = None if result is None else _content(result)
    out["search_batches"] = calls["chunks"]
    Path(folder, f"{job}-{rank}.pkl").write_bytes(pickle.dumps(out))
    dist.destroy_process_group()


def _kill_once_rank_0_is_done_searching(folder: str) -> None:
    """Raise, once rank 0 has saved its last search (the random control): a kill can fall while
    the other rank is further on (rank 0 then waits for rank 1's items)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(
            "random" in torch.load(f, weights_only=True) for f in Path(folder, "checkpoints").glob("audit-*")):
        time.sleep(0.1)
    raise RuntimeError("rank 1 killed")


def _content(result: AuditResult) -> dict:
    return {"table": result.table, "baseline": result.baseline, "joint": result.joint, "metrics": result.metrics,
            "items": result.counterfactuals.table, "deltas": result.counterfactuals.deltas,
            "codes": result.counterfactuals.codes}


def _run(folder: Path, job: str) -> list[dict]:
    mp.spawn(_worker, args=(str(folder), job), nprocs=2, join=True)
    return [pickle.loads((folder / f"{job}-{rank}.pkl").read_bytes()) for rank in range(2)]


def _assert_same_audit(found: dict, expected: AuditResult) -> None:
    reference = _content(expected)
    for key in ("table", "baseline", "items"):
        pd.testing.assert_frame_equal(found[key], reference[key], rtol=1e-4, atol=1e-6)
    # a process's share is whole joint-search batches, so each face's joint search is the same one
    columns = [c for c in reference["joint"].columns if c != "semantics_used"]
    pd.testing.assert_frame_equal(found["joint"][columns], reference["joint"][columns], rtol=1e-5, atol=1e-6,
                                  check_dtype=False)
    assert list(found["joint"]["semantics_used"]) == list(reference["joint"]["semantics_used"])
    assert torch.equal(found["codes"], reference["codes"])  # face i is the same face in every process
    assert torch.allclose(found["deltas"], reference["deltas"], atol=1e-4)
    for key, value in reference["metrics"].items():
        assert value is None and found["metrics"][key] is None or np.isclose(found["metrics"][key], value, rtol=1e-4,
                                                                              atol=1e-7), key


@pytest.fixture(scope="module")
def setting():
    return planted_rule_setting()


@pytest.fixture(scope="module")
def single_audit(setting):
    """The one-process audit, with one thread as each rank has (a thread count can change rounding)."""
    generator, classifier, subspaces, semantics = setting
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return audit(generator, classifier, subspaces, semantics=semantics, **AUDIT)
    finally:
        torch.set_num_threads(threads)


def test_two_processes_learn_and_audit_as_one(setting, single_audit, tmp_path):
    generator, _, _, semantics = setting
    ranks = _run(tmp_path, "learn+audit")
    learned = learn_subspaces(generator, semantics, **LEARN)
    for rank in ranks:  # every rank holds the same set, equal to one process's
        for name, (basis, eigenvalues, specificity) in rank["learned"].items():
            reference = learned[name].basis.double()
            assert basis.shape == reference.shape
            assert torch.allclose(basis.double() @ basis.double().T, reference @ reference.T, atol=1e-5)
            assert torch.allclose(eigenvalues.double(), learned[name].eigenvalues.double(), rtol=1e-4, atol=1e-8)
            measured = learned[name].provenance["specificity"]  # its keep gains are ~0 here, so compare the gains
            assert np.isclose(specificity["target_gain"], measured["target_gain"], rtol=1e-4)
            assert np.allclose(list(specificity["keep_gains"].values()), list(measured["keep_gains"].values()),
                               atol=1e-5)
            assert specificity["samples"] == 8
    assert ranks[1]["audit"] is None  # rank 0 holds the gathered audit
    _assert_same_audit(ranks[0]["audit"], single_audit)


def test_a_killed_rank_resumes_without_redoing_the_others(single_audit, tmp_path):
    with pytest.raises(Exception):  # rank 1's error, or rank 0's lost connection, whichever is seen first
        _run(tmp_path, "fail")
    first = [pickle.loads((tmp_path / f"fail-{rank}.pkl").read_bytes()) if (tmp_path / f"fail-{rank}.pkl").exists()
             else None for rank in range(2)]
    assert first == [None, None]  # neither finished
    # rank 0: its search, its random control's, its audit stages; rank 1: its first search batch
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "checkpoints").iterdir()) == \
        ["audit", "counterfactuals", "counterfactuals", "counterfactuals"]
    resumed = _run(tmp_path, "resume")
    _assert_same_audit(resumed[0]["audit"], single_audit)
    (tmp_path / "fresh").mkdir()
    fresh = _run(tmp_path / "fresh", "resume")
    _assert_same_audit(fresh[0]["audit"], single_audit)
    # rank 0 had finished its searches: its rerun redoes none; rank 1 redoes all but its first batch
    assert resumed[0]["search_batches"] == 0 < fresh[0]["search_batches"]
    assert resumed[1]["search_batches"] == fresh[1]["search_batches"] - 1


@pytest.mark.slow
def test_two_processes_audit_a_stylegan3_generator_as_one(tmp_path):
    """The StyleGAN3 family through torchrun's path: each rank draws its share of the faces (the
    same bits as one process's), and the gathered audit makes the same decisions and verdicts as
    the one-process audit. Edits agree to the root search's stated precision (2 %) but for the
    search's far end on an item or two: StyleGAN3's many convolutions carry round-off into the
    Newton paths (one end gap of 30 differs by 2 %), so the comparison is of what the audit claims."""
    generator, classifier, subspaces = stylegan3_setting()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _content(audit(generator, classifier, subspaces, **STYLEGAN3_AUDIT))
    finally:
        torch.set_num_threads(threads)
    ranks = _run(tmp_path, "stylegan3")
    assert ranks[1]["audit"] is None
    found = ranks[0]["audit"]
    assert torch.equal(found["codes"], single["codes"])
    pd.testing.assert_series_equal(found["items"]["flipped"], single["items"]["flipped"])
    claims = ["semantic", "rank", "verdict", "flip_rate", "random_flip_rate"]
    pd.testing.assert_frame_equal(found["table"][claims], single["table"][claims])
    pd.testing.assert_series_equal(found["table"]["median_min_edit"], single["table"]["median_min_edit"], rtol=2e-2)
    pd.testing.assert_series_equal(found["items"]["min_edit"], single["items"]["min_edit"], rtol=2e-2)


def test_faces_are_shared_in_contiguous_blocks():
    for count, block, world in ((11, 1, 2), (6, 2, 2), (7, 2, 3), (3, 4, 2), (100, 16, 8)):
        spans = Ranks(0, world).spans(count, block=block)
        assert [i for span in spans for i in span] == list(range(count))
        assert all(span.start % block == 0 for span in spans if span)
        blocks = [-(-len(span) // block) for span in spans]
        assert max(blocks) - min(blocks) <= 1
    assert SINGLE_PROCESS.span(5) == range(5) and SINGLE_PROCESS.all_gather("x") == ["x"]
    with pytest.raises(InputError, match="cannot be shared by 4 processes"):
        Ranks(0, 4).check_shareable(3, "faces")
    with pytest.raises(InputError, match="in blocks of 8"):
        Ranks(0, 2).check_shareable(8, "faces", block=8)
    Ranks(0, 2).check_shareable(9, "faces", block=8)
    with pytest.raises(InputError, match="torchrun"):
        Ranks.current()
