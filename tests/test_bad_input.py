"""What a user gets on bad input: one parametrised matrix over the API and the command line.

Each case asserts the exception type (API) or the exit code (CLI) and the words that name the
problem. docs/cli.md "What you get on bad input" is the same table in prose. Exit codes: 1 only
for a held gate, 2 for bad input or configuration, 3 for an internal error.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from cfexplain import load_generator
from cfexplain.cli import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, main
from cfexplain.classifiers import Classifier, OutputSpec
from cfexplain.counterfactual import CounterfactualExplainer, CounterfactualResult, SearchSettings
from cfexplain.errors import (CheckpointNotFoundError, CorruptCheckpointError, InputError, ModelOutputError,
                              ShapeError)
from cfexplain.subspaces import Subspace, SubspaceSet
from cfexplain._device import check_device
from cfexplain._state_dict import load_state_dict_file
from cfexplain.analyzers import BiSeNetParser

from conftest import fixture_path
from synthetic import Brightness

CHECKPOINT = str(fixture_path("stylegan2", "nvlabs_res32.pkl"))


def _subspaces(generator, space: str = "w") -> SubspaceSet:
    dim = generator.latent_dim(space)
    bases = torch.linalg.qr(torch.randn(dim, 6, generator=torch.Generator().manual_seed(0)))[0]
    return SubspaceSet([Subspace(name, bases[:, 3 * i:3 * i + 3], torch.tensor([3.0, 2.0, 1.0]), space,
                                 generator.latent_shape(space)) for i, name in enumerate(("lip_colour", "face_colour"))])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-input")
    generator = load_generator(CHECKPOINT)
    _subspaces(generator).save(folder / "subspaces")
    torch.jit.script(Brightness()).save(str(folder / "bright.pt"))
    (folder / "not-a-model.pt").write_bytes(b"\x00garbage, not a TorchScript zip")
    (folder / "a-file").write_text("I am a file")
    (folder / "wrongsize.py").write_text("import torch\nmodel = torch.nn.Sequential(torch.nn.Flatten(), "
                                         "torch.nn.Linear(10, 2))\n")
    damaged = {}
    for name, damage in (("deleted-entry", _delete_entry), ("truncated-bases", _truncate_bases),
                         ("edited-tensor", _edit_tensor), ("edited-eigenvalue", _edit_eigenvalue)):
        target = folder / name
        _subspaces(generator).save(target)
        damage(target)
        damaged[name] = target
    return {"folder": folder, "generator": generator, "damaged": damaged}


def _delete_entry(folder):
    meta = json.loads((folder / "subspaces.json").read_text())
    meta["subspaces"] = meta["subspaces"][:1]
    (folder / "subspaces.json").write_text(json.dumps(meta))


def _truncate_bases(folder):
    data = (folder / "bases.pt").read_bytes()
    (folder / "bases.pt").write_bytes(data[: len(data) // 2])


def _edit_tensor(folder):
    bases = torch.load(folder / "bases.pt", weights_only=True)
    bases["lip_colour"][0, 0] += 0.25
    torch.save(bases, folder / "bases.pt")


def _edit_eigenvalue(folder):
    meta = json.loads((folder / "subspaces.json").read_text())
    meta["subspaces"][0]["eigenvalues"][0] = 99.0
    (folder / "subspaces.json").write_text(json.dumps(meta))


def _audit(ws, *extra, subspaces=None, classifier=None, labels=("dark", "bright"), out=None):
    folder = ws["folder"]
    argv = ["audit", "--generator", CHECKPOINT, "--subspaces", str(subspaces or folder / "subspaces"),
            "--classifier", str(classifier or folder / "bright.pt"), "--faces", "2", "--quiet",
            "--out", str(out or folder / "out")]
    if labels:
        argv += ["--labels", *labels]
    return [*argv, *extra]


# (id, argv builder, exit code, words in standard error)
CLI_CASES = [
    ("device-without-cuda", lambda ws: _audit(ws, "--device", "cuda:7"), EXIT_USAGE, "no usable CUDA"),
    ("device-not-a-device", lambda ws: _audit(ws, "--device", "banana"), EXIT_USAGE, "not a torch device"),
    ("out-is-a-file", lambda ws: _audit(ws, out=ws["folder"] / "a-file"), EXIT_USAGE, "is an existing file"),
    ("out-under-a-file", lambda ws: _audit(ws, out=ws["folder"] / "a-file" / "x"), EXIT_USAGE, "which is a file"),
    ("classifier-layers-do-not-fit", lambda ws: _audit(ws, classifier="wrongsize:model"), EXIT_USAGE,
     "failed on a batch"),
    ("classifier-unknown-zoo", lambda ws: _audit(ws, classifier="zoo:nope", labels=()), EXIT_USAGE,
     "unknown zoo classifier"),
    ("classifier-damaged-torchscript", lambda ws: _audit(ws, classifier=ws["folder"] / "not-a-model.pt", labels=()),
     EXIT_USAGE, "not a TorchScript archive"),
    ("classifier-missing-file", lambda ws: _audit(ws, classifier=ws["folder"] / "missing.pt", labels=()),
     EXIT_USAGE, "no classifier file"),
    ("classifier-without-labels", lambda ws: _audit(ws, labels=()), EXIT_USAGE, "needs its labels"),
    ("budget-nan", lambda ws: _audit(ws, "--budget", "nan"), EXIT_USAGE, "budget must be a positive finite number"),
    ("budget-inf", lambda ws: _audit(ws, "--budget", "inf"), EXIT_USAGE, "budget must be a positive finite number"),
    ("budget-negative", lambda ws: _audit(ws, "--budget", "-1"), EXIT_USAGE, "budget must be a positive"),
    ("faces-zero", lambda ws: _audit(ws, "--faces", "0"), EXIT_USAGE, "faces must be positive"),
    ("batch-size-zero", lambda ws: _audit(ws, "--batch-size", "0"), EXIT_USAGE, "batch_size must be an int ≥ 1"),
    ("seed-out-of-range", lambda ws: _audit(ws, "--seed", str(2 ** 70)), EXIT_USAGE, "seed must lie in"),
    ("target-out-of-range", lambda ws: _audit(ws, "--target", "7"), EXIT_USAGE, "out of range"),
    ("gate-unknown-semantic", lambda ws: _audit(ws, "--fail-if", "flip_rate[hair] > 0.1"), EXIT_USAGE,
     "no semantic 'hair'"),
    ("subspaces-entry-deleted", lambda ws: _audit(ws, subspaces=ws["damaged"]["deleted-entry"]), EXIT_USAGE,
     "edited or damaged"),
    ("subspaces-eigenvalue-edited", lambda ws: _audit(ws, subspaces=ws["damaged"]["edited-eigenvalue"]), EXIT_USAGE,
     "edited or damaged"),
    ("subspaces-bases-truncated", lambda ws: _audit(ws, subspaces=ws["damaged"]["truncated-bases"]), EXIT_USAGE,
     "truncated or damaged torch file"),
    ("subspaces-tensor-edited", lambda ws: _audit(ws, subspaces=ws["damaged"]["edited-tensor"]), EXIT_USAGE,
     "'lip_colour' was changed or damaged"),
    ("subspaces-missing", lambda ws: _audit(ws, subspaces=ws["folder"] / "nowhere"), EXIT_USAGE,
     "not a saved subspace set"),
    ("generator-sha256-mismatch", lambda ws: _audit(ws, "--generator-sha256", "0" * 64), EXIT_USAGE,
     "is not the pinned"),
    ("generator-sha256-not-hex", lambda ws: _audit(ws, "--generator-sha256", "abc"), EXIT_USAGE, "64 hex digits"),
    ("generator-missing", lambda ws: ["learn", "--generator", str(ws["folder"] / "missing.pkl"), "--quiet"],
     EXIT_USAGE, "no checkpoint file"),
    ("generator-unknown-zoo", lambda ws: ["learn", "--generator", "zoo:nope", "--quiet"], EXIT_USAGE,
     "unknown zoo generator"),
    ("learn-samples-zero", lambda ws: ["learn", "--generator", CHECKPOINT, "--space", "w", "--semantics", "lip_colour",
                                       "--samples", "0", "--out", str(ws["folder"] / "learned"), "--quiet"],
     EXIT_USAGE, "n_samples must be an int ≥ 1"),
    ("learn-resolution-not-a-block", lambda ws: ["learn", "--generator", CHECKPOINT, "--space", "w", "--semantics",
                                                 "lip_colour", "--resolution", "3", "--out",
                                                 str(ws["folder"] / "learned"), "--quiet"],
     EXIT_USAGE, "resolution must be one of the block resolutions"),
    ("config-missing", lambda ws: ["audit", "--config", str(ws["folder"] / "none.toml")], EXIT_USAGE,
     "no configuration file"),
]


@pytest.mark.parametrize("argv, code, words", [case[1:] for case in CLI_CASES], ids=[case[0] for case in CLI_CASES])
def test_cli_bad_input(workspace, monkeypatch, capsys, argv, code, words):
    monkeypatch.syspath_prepend(str(workspace["folder"]))
    assert main(argv(workspace)) == code
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1 and "Traceback" not in err  # one clear line


@pytest.mark.parametrize("argv", [["audit", "--unit", "parsecs"], ["audit", "--faces", "many"], ["nope"]],
                         ids=["unit-not-a-choice", "faces-not-an-int", "unknown-command"])
def test_cli_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_USAGE
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_internal_error_exits_3_never_1(workspace, monkeypatch, capsys, debug):
    audit_module = sys.modules["cfexplain.audit"]

    def broken(*args, **kwargs):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(audit_module, "audit", broken)
    code = main(_audit(workspace, *(["--debug"] if debug else [])))
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL
    assert "internal error: RuntimeError: an internal bug" in err
    assert ("Traceback" in err) == debug
    assert ("--debug" in err) != debug


def _nan_checkpoint(tmp_path):
    state = torch.load(fixture_path("stylegan2", "rosinality_res32.pt"), weights_only=True)
    key = next(k for k, v in state["g_ema"].items() if v.is_floating_point() and v.ndim >= 2)
    state["g_ema"][key].view(-1)[0] = math.nan
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    return path


def _truncated_torch_file(tmp_path):
    path = tmp_path / "truncated.pth"
    torch.save({"conv.weight": torch.ones(64, 3, 7, 7)}, path)
    path.write_bytes(path.read_bytes()[:300])
    return path


def _nan_state_dict(tmp_path):
    path = tmp_path / "nan.pth"
    torch.save({"conv.weight": torch.full((2, 2), math.nan)}, path)
    return path


def _explainer(generator, classifier=None):
    output = OutputSpec.softmax(["dark", "bright"])
    return CounterfactualExplainer(generator, classifier or Classifier(Brightness(), output=output),
                                   _subspaces(generator), progress=False)


class Fails(nn.Module):
    def forward(self, x):
        return x @ torch.ones(10, 2)


API_CASES = [
    ("load-sha256-mismatch", lambda ws, tmp: load_generator(CHECKPOINT, sha256="f" * 64), CorruptCheckpointError,
     "is not the pinned"),
    ("load-device-without-cuda", lambda ws, tmp: load_generator(CHECKPOINT, device="cuda:7"), InputError,
     "no usable CUDA"),
    ("load-nan-weights", lambda ws, tmp: load_generator(_nan_checkpoint(tmp)), CorruptCheckpointError,
     "NaN or infinite"),
    ("load-missing", lambda ws, tmp: load_generator(tmp / "missing.pkl"), CheckpointNotFoundError, "no checkpoint file"),
    ("load-empty", lambda ws, tmp: load_generator((tmp / "empty.pkl").write_bytes(b"") or tmp / "empty.pkl"),
     CorruptCheckpointError, "empty"),
    ("synthesize-z-codes-by-default", lambda ws, tmp: ws["generator"].synthesize(ws["generator"].sample(2)), ShapeError,
     "pass space='z'"),
    ("explain-budget-nan", lambda ws, tmp: _explainer(ws["generator"]).explain(2, budget=math.nan), InputError,
     "budget must be a positive finite number"),
    ("settings-steps-zero", lambda ws, tmp: SearchSettings(steps=0), InputError, "steps"),
    ("settings-unknown-unit", lambda ws, tmp: SearchSettings(unit="parsecs"), InputError, "unit must be one of"),
    ("classifier-fails", lambda ws, tmp: Classifier(Fails(), output=OutputSpec.softmax(["a", "b"])).logits(
        torch.zeros(2, 3, 32, 32)), ModelOutputError, "failed on a batch of (2, 3, 32, 32)"),
    ("subspaces-entry-deleted", lambda ws, tmp: SubspaceSet.load(ws["damaged"]["deleted-entry"]),
     CorruptCheckpointError, "edited or damaged"),
    ("subspaces-tensor-edited", lambda ws, tmp: SubspaceSet.load(ws["damaged"]["edited-tensor"]),
     CorruptCheckpointError, "changed or damaged"),
    ("analyzer-truncated-checkpoint", lambda ws, tmp: BiSeNetParser.from_checkpoint(_truncated_torch_file(tmp)),
     CorruptCheckpointError, "truncated or damaged torch file"),
    ("analyzer-nan-weights", lambda ws, tmp: load_state_dict_file(_nan_state_dict(tmp)), CorruptCheckpointError,
     "'conv.weight' holds NaN or infinite values"),
    ("seed-out-of-range", lambda ws, tmp: ws["generator"].sample(1, seed=2 ** 70), InputError,
     "seed must lie in"),
    ("device-unknown-type", lambda ws, tmp: check_device("tpu"), InputError, "not a torch device"),
]


@pytest.mark.parametrize("call, error, words", [case[1:] for case in API_CASES], ids=[case[0] for case in API_CASES])
def test_api_bad_input(workspace, tmp_path, call, error, words):
    with pytest.raises(error) as info:
        call(workspace, tmp_path)
    assert words in str(info.value)


def test_a_counterfactual_result_refuses_edited_tensors(workspace, tmp_path):
    result = _explainer(workspace["generator"]).explain(2)
    folder = result.save(tmp_path / "cf")
    assert len(CounterfactualResult.load(folder).table) == len(result.table)
    tensors = torch.load(folder / "tensors.pt", weights_only=True)
    tensors["deltas"] = torch.full_like(tensors["deltas"], 0.5)
    torch.save(tensors, folder / "tensors.pt")
    with pytest.raises(CorruptCheckpointError, match="'deltas' was changed or damaged"):
        CounterfactualResult.load(folder)


def test_same_seed_same_bytes(workspace, tmp_path):
    """Two audits with the same seed write byte-identical table.csv and results.json, apart from
    the declared timestamps ("created")."""
    outputs = []
    for run in ("first", "second"):
        assert main(_audit(workspace, "--faces", "3", out=tmp_path / run)) == EXIT_OK
        results = json.loads((tmp_path / run / "results.json").read_text())
        outputs.append(((tmp_path / run / "table.csv").read_bytes(), _without_timestamps(results)))
    assert outputs[0][0] == outputs[1][0]
    assert outputs[0][1] == outputs[1][1]


def _without_timestamps(value):
    if isinstance(value, dict):
        return {k: _without_timestamps(v) for k, v in value.items() if k not in ("created", "seconds")}
    if isinstance(value, list):
        return [_without_timestamps(v) for v in value]
    return value



def test_an_audit_refuses_an_edited_json(workspace, tmp_path):
    from cfexplain.audit import AuditResult, audit

    classifier = Classifier(Brightness(), output=OutputSpec.softmax(["dark", "bright"]))
    result = audit(workspace["generator"], classifier, _subspaces(workspace["generator"]), faces=2, joint=False,
                   controls=0, progress=False)
    folder = result.save(tmp_path / "audit")
    assert AuditResult.load(folder).table["flip_rate"].tolist() == result.table["flip_rate"].tolist()
    document = json.loads((folder / "audit.json").read_text())
    document["semantics"][0]["flip_rate"] = 1.0 - document["semantics"][0]["flip_rate"]
    (folder / "audit.json").write_text(json.dumps(document))
    with pytest.raises(CorruptCheckpointError, match="edited or damaged"):
        AuditResult.load(folder)


def test_a_resealed_document_with_a_missing_or_mistyped_entry_is_a_clean_error(workspace, tmp_path):
    """A document edited and then resealed (the manifest is a checksum, not a signature) passes the
    integrity check; what it lacks or mistypes is still a clean error naming the file. A valid audit
    with NaN columns (subspaces without a measured specificity) reads back and reads out."""
    from cfexplain._integrity import seal
    from cfexplain.audit import AuditResult, audit

    classifier = Classifier(Brightness(), output=OutputSpec.softmax(["dark", "bright"]))
    result = audit(workspace["generator"], classifier, _subspaces(workspace["generator"]), faces=2, joint=False,
                   controls=2, progress=False)
    folder = result.save(tmp_path / "audit")
    loaded = AuditResult.load(folder)
    assert loaded.table["specificity"].isna().all() and loaded.summary() == result.summary()
    original = json.loads((folder / "audit.json").read_text())
    without_budget = {k: v for k, v in original["settings"].items() if k != "budget"}
    for broken in ({k: v for k, v in original.items() if k != "semantics"}, {**original, "metrics": [1, 2]},
                   {**original, "settings": "x"}, {**original, "settings": {"a": 1}},
                   {**original, "settings": without_budget}, {**original, "settings": {**without_budget, "budget": None}}):
        (folder / "audit.json").write_text(json.dumps(seal({k: v for k, v in broken.items() if k != "integrity"}, {})))
        with pytest.raises(CorruptCheckpointError, match="audit.json: damaged audit"):
            AuditResult.load(folder)


def test_an_unwritable_output_folder_fails_before_the_work(workspace, capsys):
    """/proc takes no new folders, whoever runs the tests (root included)."""
    started = time.perf_counter()
    assert main(_audit(workspace, out="/proc/cfexplain-out")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert time.perf_counter() - started < 30 and "--out /proc/cfexplain-out: cannot write there" in err
    assert main(_audit(workspace, "--checkpoint-dir", "/proc/cfexplain-checkpoints")) == EXIT_USAGE
    assert "--checkpoint-dir /proc/cfexplain-checkpoints: cannot write there" in capsys.readouterr().err
    assert main(_audit(workspace, "--checkpoint-dir", str(workspace["folder"] / "a-file"))) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--checkpoint-dir" in err and "existing file" in err


def test_sigterm_keeps_the_finished_work_and_exits_143(workspace, tmp_path):
    """SIGTERM mid-run behaves like Ctrl-C: the finished counterfactuals are kept, exit 143."""
    import subprocess

    script = tmp_path / "terminated.py"
    script.write_text(
        "import os, signal, sys\n"
        "from cfexplain.cli import main\n"
        "from cfexplain.counterfactual import CounterfactualExplainer\n"
        "real, calls = CounterfactualExplainer._search_chunk, []\n"
        "def terminate_in_the_second_batch(self, chunk, records):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(self, chunk, records)\n"
        "CounterfactualExplainer._search_chunk = terminate_in_the_second_batch\n"
        "sys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "run"
    argv = [*_audit(workspace, "--batch-size", "2", "--controls", "0", out=out)]
    done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr
    assert "terminated (SIGTERM)" in done.stderr
    kept = CounterfactualResult.load(out / "partial")
    assert len(kept.table) == 2  # the first batch


@pytest.mark.parametrize("section, line, words", [
    ("generator", "checkpoint = true", "[generator] checkpoint must be a string, got True"),
    ("audit", 'seed = "aaa"', "[audit] seed must be an integer"),
    ("audit", "out = 2020-01-01", "[audit] out must be a string"),
    ("classifier", 'threshold = "x"', "[classifier] threshold must be a number"),
    ("classifier", "threshold = false", "[classifier] threshold must be a number"),
    ("classifier", "labels = [1, 2]", "[classifier] labels must be a list of strings"),
    ("audit", 'faces = "many"', "[audit] faces must be an integer or \"auto\""),
    ("audit", 'budget = "big"', "[audit] budget must be a number"),
    ("audit", "joint = 1", "[audit] joint must be true or false"),
])
def test_config_values_of_the_wrong_type_are_refused_by_key(workspace, tmp_path, capsys, section, line, words):
    config = tmp_path / "config.toml"
    config.write_text(f"[{section}]\n{line}\n")
    assert main(_audit(workspace, "--config", str(config))) == EXIT_USAGE
    err = capsys.readouterr().err
    assert words in err and "config.toml" in err


def test_a_run_too_large_for_the_machine_is_refused_before_the_work(workspace, capsys):
    started = time.perf_counter()
    assert main(_audit(workspace, "--faces", "1000000000")) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "GiB for its tensors alone" in err and "torchrun" in err and time.perf_counter() - started < 60
    explainer = CounterfactualExplainer(workspace["generator"], Classifier(Brightness(), output=OutputSpec.softmax(
        ["dark", "bright"])), _subspaces(workspace["generator"]), progress=False)
    with pytest.raises(InputError, match="searching 1000000000000 faces"):
        explainer.explain(10**12)


def test_a_batch_whose_activations_cannot_fit_is_refused_before_the_work(workspace):
    """Two faces fit; a batch of 10⁸ items, each keeping its activations for the backward pass, does not."""
    explainer = CounterfactualExplainer(workspace["generator"], Classifier(Brightness(), output=OutputSpec.softmax(
        ["dark", "bright"])), _subspaces(workspace["generator"]), progress=False, batch_size=10**8)
    with pytest.raises(InputError, match="searching 2 faces.*GiB.*smaller batch_size"):
        explainer.explain(2)


def test_saved_activation_bytes_counts_what_the_backward_pass_keeps():
    from cfexplain.counterfactual.explainer import saved_activation_bytes

    weight = torch.randn(1000, 10)
    assert saved_activation_bytes(lambda x: (x @ weight.T).relu(), torch.zeros(1, 10)) >= 1000 * 4
    assert saved_activation_bytes(lambda x: x.detach() * 2, torch.zeros(1, 10)) == 0


def test_api_inputs_that_are_empty_non_finite_or_of_the_wrong_kind_are_input_errors(workspace):
    generator = workspace["generator"]
    cases = [(lambda: generator.synthesize(torch.zeros(0, generator.latent_dim("z")), space="z"), "empty batch"),
             (lambda: generator.sample(2, space="w", truncation=float("nan")), "truncation must be a finite"),
             (lambda: generator.sample(2, space="w", truncation=1e30), "within ±2"),
             (lambda: generator.sample(2, space="w", truncation="0.7"), "truncation must be"),
             (lambda: load_generator(5), "a checkpoint's path"),
             (lambda: load_generator(None), "a checkpoint's path")]
    for call, words in cases:
        with pytest.raises(InputError, match=words):
            call()


def test_a_subspace_with_non_finite_values_is_refused():
    with pytest.raises(InputError, match="NaN or infinite"):
        Subspace("bad", torch.full((4, 1), float("nan")), torch.ones(1), "z", (4,))
    with pytest.raises(InputError, match="NaN or infinite"):
        Subspace("bad", torch.eye(4)[:, :1], torch.tensor([float("inf")]), "z", (4,))


def test_relative_output_paths_in_a_config_are_relative_to_the_file(tmp_path, monkeypatch):
    from cfexplain.cli.config import load_config

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.toml").write_text('[audit]\nout = "results/run1"\ncheckpoint_dir = "work"\n'
                                         '[generator]\ncheckpoint = "zoo:dcgan"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(str(Path("project") / "config.toml"))
    assert Path(config["audit"]["out"]).resolve() == (folder / "results" / "run1").resolve()
    assert Path(config["audit"]["checkpoint_dir"]).resolve() == (folder / "work").resolve()
    assert config["generator"]["checkpoint"] == "zoo:dcgan"  # a spec, not a path


def test_saving_the_same_artefact_twice_gives_the_same_bytes(workspace, tmp_path):
    """Tensor files are made in memory, so their archive's inner name does not come from the
    temporary file's random name: two saves of one audit are byte for byte the same."""
    from cfexplain.audit import audit

    classifier = Classifier(Brightness(), output=OutputSpec.softmax(["dark", "bright"]))
    result = audit(workspace["generator"], classifier, _subspaces(workspace["generator"]), faces=2, joint=False,
                   controls=0, progress=False)
    one, two = result.save(tmp_path / "one"), result.save(tmp_path / "two")
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
