"""The ``cfexplain`` command line: demo, learn, explain, audit with gates, report, config files."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import warnings
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from cfexplain import zoo
from cfexplain.audit import AuditResult
from cfexplain.counterfactual import CounterfactualResult
from cfexplain.cli import EXIT_GATE_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from cfexplain.cli.gates import check_gates, parse_gate
from cfexplain.errors import InputError, ModelFetchError
from cfexplain.imaging import to_pil
from cfexplain.report import load_results_schema
from cfexplain.subspaces import SubspaceSet
from conftest import fixture_path
from synthetic import Brightness


def test_demo_runs_a_real_audit(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--faces", "4"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("answer: ") == 2 and "wrote" in out
    results = json.loads((tmp_path / "results.json").read_text())
    jsonschema.validate(results, load_results_schema())
    assert len(results["audits"]) == 2 and "Gender" in results["audits"][0]["title"]
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert {row["audit"] for row in rows} == {a["title"] for a in results["audits"]}
    assert len(rows) == 2 * 6  # two audits × six FaceMesh semantics
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page and "<script" not in page
    demo_subspaces = SubspaceSet.load(tmp_path / "subspaces")
    assert set(demo_subspaces) == {r["semantic"] for r in rows}
    assert demo_subspaces.space == "s" and demo_subspaces["lip_colour"].provenance["origin"]["preset"] == "facemesh"
    assert len(demo_subspaces.specificity_table()) == 6
    # the demo's subspaces carry their semantics' origin, so an audit of them measures side effects
    out_dir = tmp_path / "audit-of-demo"
    assert main(["audit", "--generator", "zoo:dcgan", "--classifier", "zoo:gender", "--subspaces",
                 str(tmp_path / "subspaces"), "--faces", "2", "--out", str(out_dir)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "side effects are not measured" not in printed and "side_effect" in printed
    assert "unconstrained control" in printed and "latent_gradient" in printed

    # photos instead of generated faces: a folder with one usable photo and one without a face
    photos = tmp_path / "photos"
    photos.mkdir()
    to_pil(zoo.example_photos(["astronaut"])[0].pixels[None])[0].save(photos / "astronaut.png")
    Image.new("RGB", (96, 96), (120, 120, 120)).save(photos / "wall.png")
    photo_audit = ["audit", "--generator", "zoo:dcgan", "--classifier", "zoo:gender", "--subspaces",
                   str(tmp_path / "subspaces"), "--images", str(photos), "--inversion-steps", "20",
                   "--out", str(tmp_path / "photo-audit")]
    assert main(photo_audit) == EXIT_USAGE  # the wall has no face: named, nothing half-done
    assert "wall.png: no face" in capsys.readouterr().err
    assert main(photo_audit + ["--skip-unusable"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "photos keep their decision" in printed and f"skipped: {photos / 'wall.png'} (no face)" in printed
    assert "Only 1 photo counted: the rates below describe this photo" in printed
    page = (tmp_path / "photo-audit" / "report.html").read_text()
    assert "<h3>Photos</h3>" in page and 'data-photo="' in page and "astronaut.png" in page
    saved = AuditResult.load(tmp_path / "photo-audit" / "audit")
    assert saved.counterfactuals.photos.names == [str(photos / "astronaut.png")]
    assert saved.counterfactuals.photos.skipped == [(str(photos / "wall.png"), "no face")]
    assert main(["explain", "--generator", "zoo:dcgan", "--classifier", "zoo:gender", "--subspaces",
                 str(tmp_path / "subspaces"), "--images", str(photos / "astronaut.png"), "--inversion-steps", "20",
                 "--out", str(tmp_path / "photo-explain")]) == EXIT_OK
    assert (tmp_path / "photo-explain" / "photos.csv").read_text().startswith(
        "photo,psnr,decision_photo,decision_reconstruction,p_photo_decision_on_photo,p_photo_decision_on_reconstruction,")
    items = list(csv.DictReader(open(tmp_path / "photo-explain" / "table.csv")))
    assert {row["photo"] for row in items} == {str(photos / "astronaut.png")}  # named, not only by index
    assert "latent_gradient" in capsys.readouterr().out


def test_model_fetch_failure_exits_2_with_a_message(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise ModelFetchError("could not download gan_face_generate-1.1.1-py3-none-any.whl (test)")

    monkeypatch.setattr(zoo, "dcgan_faces", no_network)
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == EXIT_USAGE
    assert "could not download" in capsys.readouterr().err


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    torch.jit.script(Brightness()).save(str(folder / "bright.pt"))
    checkpoint = str(fixture_path("stylegan2", "nvlabs_res32.pkl"))
    code = main(["learn", "--generator", checkpoint, "--stack", "facemesh", "--space", "w", "--semantics", "lip_colour",
                 "face_colour", "--samples", "2", "--out", str(folder / "subspaces"), "--quiet"])
    assert code == EXIT_OK
    return folder, checkpoint


def test_learn_writes_a_subspace_set(workspace):
    folder, _ = workspace
    learned = SubspaceSet.load(folder / "subspaces")
    assert list(learned) == ["lip_colour", "face_colour"] and learned.space == "w"


def test_a_saved_subspace_set_carries_its_semantics(workspace):
    """learn → save → load → audit measures side effects without being handed the semantics; a set
    whose semantics were built by hand says so by name."""
    from cfexplain.audit import MissingSemanticsWarning, audit
    from cfexplain.classifiers import Classifier, OutputSpec
    from cfexplain.generators import load_generator
    from cfexplain.presets import semantics_of

    folder, checkpoint = workspace
    subspaces = SubspaceSet.load(folder / "subspaces")
    rebuilt = semantics_of(subspaces)
    assert [s.name for s in rebuilt] == ["lip_colour", "face_colour"]
    assert [c.name for c in rebuilt[0].keep] == ["outside:lips", "landmarks:lips (centred)"]
    generator = load_generator(checkpoint)
    classifier = Classifier(Brightness(), output=OutputSpec.softmax(["dark", "bright"]))
    result = audit(generator, classifier, subspaces, faces=4, joint=False, controls=2, progress=False)
    flipped = result.table.set_index("semantic")["flip_rate"] > 0
    assert result.table.set_index("semantic").loc[flipped, "side_effect"].notna().all() and flipped.any()
    lip = subspaces["lip_colour"]
    by_hand = SubspaceSet([dataclasses.replace(lip, provenance={k: v for k, v in lip.provenance.items() if k != "origin"})])
    with pytest.raises(InputError, match="cannot rebuild semantic 'lip_colour'"):
        semantics_of(by_hand)
    with pytest.warns(MissingSemanticsWarning, match="lip_colour"):
        bare = audit(generator, classifier, by_hand, faces=2, joint=False, controls=0, baseline=False, progress=False)
    assert bare.table["side_effect"].isna().all()


def test_explain(workspace):
    folder, checkpoint = workspace
    out = folder / "cf"
    code = main(["explain", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
                 str(folder / "bright.pt"), "--labels", "dark", "bright", "--faces", "3", "--out", str(out), "--quiet"])
    assert code == EXIT_OK
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert len(rows) == 3 * 3  # 3 faces × (2 subspaces + the latent-gradient control)
    assert sum(row["subspace"] == "latent_gradient" for row in rows) == 3


def test_audit_gates_and_report(workspace, capsys):
    folder, checkpoint = workspace
    common = ["audit", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
              str(folder / "bright.pt"), "--labels", "dark", "bright", "--faces", "4", "--quiet"]
    out = folder / "audit"
    assert main([*common, "--out", str(out), "--fail-if", "flip_rate[lip_colour] > 1.5"]) == EXIT_OK
    jsonschema.validate(json.loads((out / "results.json").read_text()), load_results_schema())
    assert main([*common, "--out", str(folder / "audit2"), "--fail-if", "flip_rate[lip_colour] >= 0",
                 "--fail-if", "validity < 2"]) == EXIT_GATE_FAILED
    printed = capsys.readouterr().out
    assert "gate failed: flip_rate[lip_colour] >= 0" in printed and "gate failed: validity < 2" in printed
    saved = AuditResult.load(out / "audit")
    assert set(saved.table["semantic"]) == {"lip_colour", "face_colour"}
    assert saved.table["side_effect"].notna().any()  # keep criteria rebuilt from the stack `learn` recorded
    assert main(["report", "--generator", checkpoint, "--audit", str(out / "audit"), "--subspaces",
                 str(folder / "subspaces"), "--out", str(folder / "rendered"), "--quiet"]) == EXIT_OK
    assert "data:image/png;base64," in (folder / "rendered" / "report.html").read_text()
    assert main(["report", "--generator", checkpoint, "--audit", str(out), "--subspaces",
                 str(folder / "subspaces"), "--out", str(folder / "rendered"), "--quiet"]) == EXIT_USAGE
    assert f"give --audit {out / 'audit'}" in capsys.readouterr().err


class ChannelsLastBrightness(nn.Module):
    """Brightness on NHWC images, as a Keras model exported to ONNX takes them."""

    def forward(self, x):
        return Brightness()(x.permute(0, 3, 1, 2))


def test_audit_of_an_onnx_classifier_equals_its_torchscript_audit(workspace, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency: pip install '.[test]'")
    folder, checkpoint = workspace
    onnx_file = tmp_path / "bright.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notice that the TorchScript-based exporter is the legacy one
        torch.onnx.export(ChannelsLastBrightness(), (torch.randn(1, 32, 32, 3),), str(onnx_file), dynamo=False,
                          input_names=["images"], dynamic_axes={"images": {0: "n"}})
    common = ["audit", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--labels", "dark", "bright",
              "--faces", "2", "--controls", "0", "--quiet"]
    assert main([*common, "--classifier", str(onnx_file), "--out", str(tmp_path / "onnx")]) == EXIT_OK  # NHWC, read
    assert main([*common, "--classifier", str(folder / "bright.pt"), "--out", str(tmp_path / "ts")]) == EXIT_OK
    through_onnx, through_torchscript = (AuditResult.load(tmp_path / name / "audit").table for name in ("onnx", "ts"))
    assert list(through_onnx["flip_rate"]) == list(through_torchscript["flip_rate"])
    assert np.allclose(through_onnx["median_min_edit"], through_torchscript["median_min_edit"], rtol=1e-3, equal_nan=True)
    # --black-box: the file is queried through onnxruntime, the search runs from queries only
    assert main([*common, "--classifier", str(onnx_file), "--black-box", "--max-queries", "60",
                 "--out", str(tmp_path / "queried")]) == EXIT_OK
    queried = AuditResult.load(tmp_path / "queried" / "audit")
    assert queried.settings["black_box"] and queried.table["median_queries"].le(60).all()
    assert queried.counterfactuals.table["queries"].le(60).all()
    explained = ["explain", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--labels", "dark",
                 "bright", "--faces", "2", "--classifier", str(onnx_file), "--black-box", "--quiet"]
    assert main([*explained, "--out", str(tmp_path / "explained")]) == EXIT_OK  # no latent-gradient control
    rows = list(csv.DictReader(open(tmp_path / "explained" / "table.csv")))
    assert len(rows) == 2 * 2 and all(row["subspace"] != "latent_gradient" and int(row["queries"]) > 0 for row in rows)
    (tmp_path / "damaged.onnx").write_bytes(onnx_file.read_bytes()[:100])
    assert main([*common, "--classifier", str(tmp_path / "damaged.onnx"), "--out", str(tmp_path / "x")]) == EXIT_USAGE
    assert "ONNX model" in capsys.readouterr().err
    assert main([*common, "--classifier", str(folder / "bright.pt"), "--layout", "NHWC",
                 "--out", str(tmp_path / "y")]) == EXIT_USAGE
    assert "settings of an ONNX classifier" in capsys.readouterr().err


def test_audit_under_torchrun_equals_one_process(workspace, tmp_path):
    """``torchrun --nproc-per-node 2 -m cfexplain audit`` writes the audit one process writes."""
    folder, checkpoint = workspace
    common = ["audit", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
              str(folder / "bright.pt"), "--labels", "dark", "bright", "--faces", "9", "--quiet"]  # 8 + 1
    assert main([*common, "--out", str(tmp_path / "one")]) == EXIT_OK
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "-m", "cfexplain", *common, "--out", str(tmp_path / "two"), "--checkpoint-dir",
                               str(tmp_path / "checkpoints")], capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    one, two = AuditResult.load(tmp_path / "one" / "audit"), AuditResult.load(tmp_path / "two" / "audit")
    pd.testing.assert_frame_equal(two.table, one.table, rtol=1e-4, atol=1e-6)
    pd.testing.assert_frame_equal(two.counterfactuals.table, one.counterfactuals.table, rtol=1e-4, atol=1e-6)
    assert (tmp_path / "two" / "report.html").is_file()
    assert len(list((tmp_path / "checkpoints").glob("audit-*.pt"))) == 2  # one per rank


def test_one_process_commands_refuse_torchrun(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for command in (["demo", "--out", str(tmp_path)], ["report", "--audit", "a", "--subspaces", "s"]):
        assert main(command) == EXIT_USAGE
        assert "runs in one process; under torchrun, run `cfexplain learn` or `cfexplain audit`" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")  # the other ranks say which they are
    assert main(["demo", "--out", str(tmp_path)]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("cfexplain (rank 1): error: `cfexplain demo` runs in one process")


def test_config_file_with_flags_overriding(workspace, tmp_path):
    folder, checkpoint = workspace
    config = tmp_path / "cfexplain.toml"
    (tmp_path / "model.pt").write_bytes((folder / "bright.pt").read_bytes())
    config.write_text(f"""
[generator]
checkpoint = "{checkpoint}"

[classifier]
model = "model.pt"
labels = ["dark", "bright"]

[classifier.preprocessing]
value_range = [-1.0, 1.0]

[audit]
subspaces = "{folder / 'subspaces'}"
faces = 3
fail_if = ["flip_rate[face_colour] > 5"]
""")
    assert main(["audit", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == EXIT_OK
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["audits"][0]["settings"]["n"] == 3
    assert main(["audit", "--config", str(config), "--faces", "2", "--out", str(tmp_path / "out2"), "--quiet"]) == EXIT_OK
    assert json.loads((tmp_path / "out2" / "results.json").read_text())["audits"][0]["settings"]["n"] == 2


def test_bad_input_exits_2_with_a_message(workspace, tmp_path, capsys):
    folder, checkpoint = workspace
    assert main(["learn", "--generator", str(tmp_path / "missing.pkl"), "--quiet"]) == EXIT_USAGE
    assert "no checkpoint file" in capsys.readouterr().err
    base = ["audit", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
            str(folder / "bright.pt"), "--labels", "dark", "bright", "--faces", "2", "--out", str(tmp_path / "x"), "--quiet"]
    assert main([*base, "--fail-if", "flip_rate[hair] > 0.1"]) == EXIT_USAGE
    assert "no semantic 'hair'" in capsys.readouterr().err
    assert main([*base, "--fail-if", "flip rate is high"]) == EXIT_USAGE
    assert "cannot read the condition" in capsys.readouterr().err
    assert main([*base, "--target", "7"]) == EXIT_USAGE
    assert "out of range" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[generator\n")
    assert main(["learn", "--config", str(tmp_path / "bad.toml")]) == EXIT_USAGE
    assert "not valid TOML" in capsys.readouterr().err
    (tmp_path / "typo.toml").write_text("[audit]\nfaecs = 3\n")
    assert main(["audit", "--config", str(tmp_path / "typo.toml")]) == EXIT_USAGE
    assert "unknown keys ['faecs'] in [audit]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--no-such-flag"])
    assert exit_info.value.code == EXIT_USAGE


def test_gate_parsing():
    gate = parse_gate("flip_rate[hair_photometry] > 0.2")
    assert (gate.column, gate.semantic, gate.op, gate.value) == ("flip_rate", "hair_photometry", ">", 0.2)
    assert parse_gate("validity<=0.5").semantic is None
    with pytest.raises(InputError):
        parse_gate("flip_rate[x] ~ 3")
    verdict = parse_gate("evidence[face_colour]")
    assert (verdict.verdict, verdict.semantic, verdict.op) == ("evidence", "face_colour", None)
    assert parse_gate("cannot_tell[*]").verdict == "cannot tell"
    for bad, words in (("flip_rate[lip_colour] > nan", "finite"), ("evidance[lip_colour]", "must be a verdict")):
        with pytest.raises(InputError, match=words):
            parse_gate(bad)
    names = ["lip_colour", "face_colour"]
    for bad, words in (("validty > 0.5", "no metric 'validty'"), ("flip_rte[lip_colour] > 0.1", "no column"),
                       ("other_heads_flipped[lip_colour] > 0", "sigmoid"), ("evidence[hair]", "no semantic"),
                       ("flip_rate[*] > 0.1", "verdicts only")):
        with pytest.raises(InputError, match=words):
            check_gates([parse_gate(bad)], names, kind="softmax", controls=16)
    with pytest.raises(InputError, match="random control"):
        check_gates([parse_gate("evidence[lip_colour]")], names, kind="softmax", controls=0)
    check_gates([parse_gate(g) for g in ("evidence[*]", "effect[lip_colour] > 0.7", "detectable_effect > 0.7")], names,
                kind="softmax", controls=16)


def test_verdict_gates_hold_on_the_audit(workspace, capsys):
    """A verdict gate fails the run (exit 1) exactly when the audit's verdict is that one."""
    folder, checkpoint = workspace
    common = ["audit", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
              str(folder / "bright.pt"), "--labels", "dark", "bright", "--faces", "8", "--controls", "4",
              "--no-joint", "--quiet"]
    assert main([*common, "--out", str(folder / "gated")]) == EXIT_OK
    result = AuditResult.load(folder / "gated" / "audit")
    name, verdict = result.table["semantic"].iloc[0], result.table["verdict"].iloc[0]
    gate = {"evidence": "evidence", "no evidence": "no_evidence", "cannot tell": "cannot_tell"}[verdict]
    other = "evidence" if gate != "evidence" else "no_evidence"
    assert main([*common, "--out", str(folder / "gated2"), "--fail-if", f"{gate}[{name}]", "--fail-if",
                 f"{other}[{name}]"]) == EXIT_GATE_FAILED
    printed = capsys.readouterr().out
    assert f"gate failed: {gate}[{name}] (verdict {verdict})" in printed and f"{other}[{name}]" not in printed


@pytest.mark.parametrize("command", ["demo", "learn", "explain", "audit", "report"])
def test_help_everywhere(command):
    result = subprocess.run([sys.executable, "-m", "cfexplain.cli", command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Exit codes" in result.stdout


def test_version():
    result = subprocess.run([sys.executable, "-m", "cfexplain.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("cfexplain ")


def test_api_reference_is_current():
    """docs/api.md is generated from the docstrings; regenerate it with tools/api_docs.py."""
    result = subprocess.run([sys.executable, "tools/api_docs.py", "--check"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


def test_audit_column_tables_are_current():
    """docs/audit.md's column and metric tables are generated from the declarations; regenerate them
    with tools/audit_docs.py."""
    result = subprocess.run([sys.executable, "tools/audit_docs.py", "--check"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr


def test_classifier_as_module_callable_from_the_working_directory(workspace, tmp_path, monkeypatch):
    folder, checkpoint = workspace
    (tmp_path / "my_heads.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Heads(nn.Module):\n    def forward(self, x):\n"
        "        m = x.mean(dim=(2, 3))\n        return torch.stack([6 * m[:, 0], 6 * (m[:, 1] - m[:, 2])], dim=1)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    code = main(["explain", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
                 "my_heads:Heads", "--labels", "red", "greenish", "--kind", "sigmoid", "--target", "greenish,on",
                 "--faces", "2", "--out", str(tmp_path / "cf"), "--quiet"])
    assert code == EXIT_OK
    rows = list(csv.DictReader(open(tmp_path / "cf" / "table.csv")))
    assert len(rows) == 6 and "other_heads_flipped" in rows[0]  # 2 faces × (2 subspaces + the latent-gradient control)


def test_an_interrupted_explain_saves_the_finished_batches(workspace, tmp_path, monkeypatch, capsys):
    from cfexplain.counterfactual import CounterfactualExplainer

    folder, checkpoint = workspace
    search, calls = CounterfactualExplainer._search, []

    def interrupted_second_batch(self, *args, **kwargs):  # Ctrl-C while the second batch is searched
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return search(self, *args, **kwargs)

    monkeypatch.setattr(CounterfactualExplainer, "_search", interrupted_second_batch)
    out = tmp_path / "cf"
    code = main(["explain", "--generator", checkpoint, "--subspaces", str(folder / "subspaces"), "--classifier",
                 str(folder / "bright.pt"), "--labels", "dark", "bright", "--faces", "2", "--batch-size", "2",
                 "--out", str(out)])
    assert code == EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert "cfexplain: interrupted" in captured.err and "2 counterfactuals finished" in captured.out
    rows = list(csv.DictReader(open(out / "partial" / "table.csv")))
    assert [row["face"] for row in rows] == ["0", "0"]
    assert len(CounterfactualResult.load(out / "partial").table) == 2


def test_help_and_argument_errors_answer_before_torch_is_imported():
    """``--help`` and a bad flag are answered by argparse alone: torch (seconds to import on a busy
    machine) is not loaded, and neither is any model."""
    probe = ("import sys\nfrom cfexplain.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
             "    print('exit', e.code, 'torch' in sys.modules)\n")
    for argv, code in ((["--help"], 0), (["audit", "--help"], 0), (["audit", "--threads", "x"], 2),
                       (["demo", "--faces", "many"], 2)):
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120)
        assert done.stdout.strip().splitlines()[-1] == f"exit {code} False", (argv, done.stdout, done.stderr)


def test_photos_writes_the_example_photos(tmp_path, capsys):
    assert main(["photos", "--out", str(tmp_path / "photos")]) == EXIT_OK
    written = sorted(path.name for path in (tmp_path / "photos").iterdir())
    assert written == ["astronaut.png", "group.png", "hanks.png"]
    assert Image.open(tmp_path / "photos" / "group.png").size[0] > 200
    assert "--multiple-faces" in capsys.readouterr().out


def test_demo_refuses_bad_arguments_before_loading_a_model(tmp_path, monkeypatch, capsys):
    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(zoo, "dcgan_faces", loaded)
    assert main(["demo", "--faces", "0", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "--faces must be an int ≥ 1, got 0" in capsys.readouterr().err
