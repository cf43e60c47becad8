"""Counterfactual search and the audit, on a synthetic generator with a planted decision rule."""

from __future__ import annotations

import importlib
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cfexplain.audit import TABLE_COLUMNS, AuditResult, audit
from cfexplain.classifiers import Classifier, OutputSpec
from cfexplain.counterfactual import CounterfactualExplainer, CounterfactualResult
from cfexplain.errors import InputError, ModelOutputError
from cfexplain.subspaces import Subspace, SubspaceSet
from synthetic import LEFT, FixedRegionParser, LeftRedness, planted_rule_setting


@pytest.fixture(scope="module")
def setting():
    return planted_rule_setting()


@pytest.mark.parametrize("optimizer", ["newton", "adam"])
def test_counterfactuals_flip_the_decision_at_the_boundary(setting, optimizer):
    generator, classifier, subspaces, _ = setting
    explainer = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", budget=4.0, optimizer=optimizer, progress=False)
    result = explainer.explain(10, target="flip")
    table = result.to_dataframe()
    left, right = table[table.subspace == "left_colour"], table[table.subspace == "right_colour"]
    assert left.flipped.mean() >= 0.6
    assert (left[~left.flipped].end_edit >= 4.0 - 1e-3).all()  # faces not flipped used the whole budget
    assert right.flipped.sum() == 0  # the classifier ignores the right region
    flipped = left[left.flipped]
    assert np.allclose(flipped.p_after, 0.5, atol=0.03)  # the minimal edit sits on the boundary
    assert (flipped.min_edit <= 4.0 + 1e-6).all() and (table.end_edit <= 4.0 + 1e-5).all()
    assert (flipped.p_end > 0.5).all() and (flipped.p_before < 0.5).all()
    # Edits lie in their subspace.
    basis = subspaces["left_colour"].basis.double()
    rows = torch.tensor(flipped.index.to_numpy())
    deltas = result.deltas[rows].double()
    assert torch.allclose(deltas, deltas @ basis @ basis.T, atol=1e-4)
    # The decision really changes at the minimal counterfactual, and not at 90 % of it.
    codes = result.codes_of("minimal")[rows]
    faces = torch.tensor(flipped.face.to_numpy())
    with torch.no_grad():
        before = classifier.predict(generator.synthesize(result.codes[faces]))
        after = classifier.predict(generator.synthesize(codes + 0.002 * deltas.float() / deltas.norm(dim=1, keepdim=True).float()))
        short = classifier.predict(generator.synthesize(result.codes[faces] + 0.9 * deltas.float()))
    assert (after != before).all() and (short == before).all()
    # The result's images are the faces and their counterfactuals.
    originals, minimal = result.images("original", generator=generator), result.images("minimal", generator=generator)
    with torch.no_grad():
        assert torch.allclose(originals[rows], generator.synthesize(result.codes[faces]), atol=1e-6)
        assert torch.allclose(minimal[rows], generator.synthesize(codes), atol=1e-6)
    # Its pixel proximity columns measure the change between them (none where not flipped).
    change = minimal - originals
    assert np.allclose(table.pixel_l1, change.abs().mean(dim=(1, 2, 3)).numpy(), atol=1e-5)
    assert np.allclose(table.pixel_l2, change.square().mean(dim=(1, 2, 3)).sqrt().numpy(), atol=1e-5)
    assert (table[~table.flipped].pixel_l1 == 0).all() and (flipped.pixel_l1 > 0).all()


def test_newton_steps_flip_faster_than_adam(setting):
    generator, classifier, subspaces, _ = setting
    runs = {name: CounterfactualExplainer(generator, classifier, subspaces, unit="latent", budget=4.0, optimizer=name, progress=False)
            .explain(10, subspaces=["left_colour"]).to_dataframe() for name in ("newton", "adam")}
    newton, adam = runs["newton"], runs["adam"]
    assert newton.flipped.mean() >= adam.flipped.mean()
    assert newton[newton.flipped].steps.mean() * 3 < adam[adam.flipped].steps.mean()
    both = newton.flipped & adam.flipped  # same faces, same straight-ish paths: similar boundary distances
    assert np.allclose(newton[both].min_edit, adam[both].min_edit, rtol=0.25)


def test_targets_by_class_and_label(setting):
    generator, classifier, subspaces, _ = setting
    explainer = CounterfactualExplainer(generator, classifier, subspaces, progress=False)
    red = explainer.explain(8, target="red", subspaces=["left_colour"]).to_dataframe()
    assert red.flipped.sum() >= 3 and (red[red.flipped].p_end > 0.5).all()
    already_red = red.p_before > 0.5
    assert (red[already_red].min_edit == 0).all() and red[already_red].flipped.all()
    with pytest.raises(InputError, match="out of range"):
        explainer.explain(2, target=5)
    with pytest.raises(InputError, match="unknown label"):
        explainer.explain(2, target="green")
    with pytest.raises(InputError, match="no subspace named"):
        explainer.explain(2, subspaces=["hair"])


def test_sigmoid_heads_on_and_off(setting):
    generator, _, subspaces, _ = setting

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.left = LeftRedness()

        def forward(self, x):
            return torch.stack([LeftRedness.forward(self.left, x)[:, 1], x.mean(dim=(1, 2, 3))], dim=1)

    classifier = Classifier(TwoHeads(), output=OutputSpec.sigmoid(["red_left", "bright"]))
    explainer = CounterfactualExplainer(generator, classifier, subspaces, progress=False)
    on = explainer.explain(8, target=("red_left", "on"), subspaces=["left_colour"]).to_dataframe()
    assert on.flipped.sum() >= 3 and (on[on.flipped].p_end > 0.5).all() and "other_heads_flipped" in on
    off = explainer.explain(8, target=("red_left", "off"), subspaces=["left_colour"]).to_dataframe()
    assert off.flipped.sum() >= 3 and (off[off.flipped].p_end > 0.5).all()  # the target probability is P(head off)
    with pytest.raises(InputError, match="needs one named"):
        explainer.explain(2, target="flip")

    class RedLeft(TwoHeads):
        def forward(self, x):
            return super().forward(x)[:, :1]

    single = Classifier(RedLeft(), output=OutputSpec.sigmoid(["red_left"]))
    flipped = CounterfactualExplainer(generator, single, subspaces, progress=False).explain(
        8, target="flip", subspaces=["left_colour"]).to_dataframe()  # one head: "flip" flips it
    assert flipped.flipped.sum() >= 3 and (flipped[flipped.flipped].p_end > 0.5).all()


def test_result_save_load_and_json(setting, tmp_path):
    generator, classifier, subspaces, _ = setting
    result = CounterfactualExplainer(generator, classifier, subspaces, progress=False).explain([3, 4, 5])
    loaded = CounterfactualResult.load(result.save(tmp_path / "cf"))
    assert loaded.to_dataframe().equals(result.to_dataframe().astype(loaded.to_dataframe().dtypes)) or \
        np.allclose(loaded.table.min_edit.fillna(-1), result.table.min_edit.fillna(-1))
    assert torch.equal(loaded.deltas, result.deltas)
    with pytest.raises(InputError, match="pass generator="):  # a result is data: it holds no model
        loaded.images("minimal")
    assert torch.equal(loaded.images("minimal", generator=generator), result.images("minimal", generator=generator))
    data = json.loads(result.to_json())
    assert data["format_version"] == 2 and set(data["integrity"]["tensors"]) == {"codes", "deltas", "end_deltas"} and len(data["items"]) == 6 and data["target"] == "flip the decision"


def test_explainer_input_errors(setting):
    generator, classifier, subspaces, _ = setting
    with pytest.raises(InputError, match="non-empty"):
        CounterfactualExplainer(generator, classifier, SubspaceSet([]))
    wrong = SubspaceSet([Subspace("x", torch.eye(5)[:, :1], torch.ones(1), "z", (5,))])
    with pytest.raises(InputError, match="latent shape"):
        CounterfactualExplainer(generator, classifier, wrong)
    with pytest.raises(InputError, match="Classifier"):
        CounterfactualExplainer(generator, LeftRedness(), subspaces)

    class Broken(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"))

    explainer = CounterfactualExplainer(generator, Classifier(Broken(), output=OutputSpec.softmax(["a", "b"])), subspaces,
                                        progress=False)
    with pytest.raises(ModelOutputError, match="NaN"):
        explainer.explain(2)


def test_audit_finds_the_planted_rule(setting, tmp_path):
    generator, classifier, subspaces, semantics = setting
    result = audit(generator, classifier, subspaces, faces=12, seed=1, unit="latent", budget=4.0, semantics=semantics, progress=False)
    table = result.to_dataframe()
    assert set(TABLE_COLUMNS) - {"other_heads_flipped", "median_queries"} <= set(table.columns)  # sigmoid; black box
    assert "median_queries" not in table
    assert result.ranking()[0] == "left_colour"
    by_name = table.set_index("semantic")
    assert by_name.loc["left_colour", "flip_rate"] >= 0.6 and by_name.loc["right_colour", "flip_rate"] == 0
    assert by_name.loc["left_colour", "attribution"] > 0.9  # IG gives the change to the left colour
    assert table["random_flip_rate"].between(0, 1).all()  # random subspaces of the same dimensions, same faces
    assert by_name.loc["left_colour", "flip_rate"] > by_name.loc["left_colour", "random_flip_rate"]
    assert by_name.loc["left_colour", "side_effect"] < 0.2  # its keep criterion (outside the left) barely moved
    assert math.isnan(by_name.loc["right_colour", "side_effect"])  # nothing flipped: nothing to measure
    assert result.metrics["joint_validity"] >= 0.5 and result.metrics["joint_sparsity"] == 1.0
    # IG attributes the change up to the counterfactual (on the boundary), not up to the search's
    # end (a margin past it): the true change is the face's distance to the boundary
    joint = result.joint[result.joint["flipped"]]
    searched = result.counterfactuals.table
    p_before = searched[searched["subspace"] == "left_colour"].set_index("face")["p_before"]
    gap_before = np.log(p_before / (1 - p_before)).loc[joint["face"]].to_numpy()
    gap_at_counterfactual = (joint["gap_change"] - joint["ig_delta"]).to_numpy() + gap_before
    assert len(joint) and (np.abs(gap_at_counterfactual) < 0.1).all()  # margin 0.5: the end lies ≥ 0.5 past
    assert 0 < result.metrics["validity"] <= 1
    items = result.counterfactuals.table
    semantic_items = (items["subspace"] != "latent_gradient").to_numpy()  # the metrics are the subspaces'
    flipped = items["flipped"].to_numpy() & semantic_items
    latent = result.counterfactuals.deltas[torch.tensor(flipped)]
    assert math.isclose(result.metrics["proximity_latent_l1"], float(latent.abs().sum(dim=1).mean()), rel_tol=1e-5)
    assert math.isclose(result.metrics["proximity_latent_l2"], float(latent.norm(dim=1).mean()), rel_tol=1e-4)
    # the unconstrained control: one search per face along its own latent gradient, not ranked
    assert (~semantic_items).sum() == 12 and list(result.baseline["semantic"]) == ["latent_gradient"]
    control = result.baseline.iloc[0]
    assert control["flip_rate"] == items.loc[~semantic_items, "flipped"].mean()
    assert 0 <= control["side_effect"] and "latent_gradient" not in result.ranking()
    loaded = AuditResult.load(result.save(tmp_path / "audit"))
    assert loaded.ranking() == result.ranking()
    assert math.isclose(loaded.baseline["flip_rate"].iloc[0], control["flip_rate"], rel_tol=1e-9)
    assert (tmp_path / "audit" / "table.csv").read_text().startswith("semantic,")


def test_audit_errors(setting):
    generator, classifier, subspaces, _ = setting
    with pytest.raises(InputError, match="empty"):
        audit(generator, classifier, SubspaceSet([]))
    empty = SubspaceSet([Subspace("nothing", torch.zeros(12, 0), torch.zeros(0), "z", (12,))])
    with pytest.raises(InputError, match="0 directions"):
        audit(generator, classifier, empty)


def test_randomization_changes_the_explanation(setting):
    from cfexplain.trust import randomization_check, randomize_weights

    generator, _, subspaces, _ = setting

    class LinearReadout(nn.Module):  # "trained" to read the left region only
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 16 * 16, 2)
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.bias.zero_()
                self.linear.weight.view(2, 3, 16, 16)[1, :, LEFT[0], LEFT[1]] = LeftRedness().readout * 3

        def forward(self, x):
            return self.linear(x.flatten(1))

    classifier = Classifier(LinearReadout(), output=OutputSpec.softmax(["blue", "red"]))
    randomized = randomize_weights(classifier, seed=0)
    assert not torch.equal(randomized.model.linear.weight, classifier.model.linear.weight)
    check = randomization_check(generator, classifier, subspaces, n=10, seed=0, unit="latent", budget=4.0)
    assert check.original[0] == "left_colour"
    assert check.changed and check.flip_rate_change > 0.2


def test_stability_across_disjoint_samples(setting):
    from cfexplain.trust import stability_check

    generator, _, _, semantics = setting
    agreement = stability_check(generator, semantics, space="z", n_samples=3, seeds=(10, 20))
    assert agreement.agreement["left_colour"] > 0.99 and agreement.agreement["right_colour"] > 0.99
    assert agreement.worst > 0.99 and agreement.seeds == (10, 20)


def test_planted_shortcut_is_found(setting):
    from cfexplain.trust import planted_shortcut_check, shortcut_dataset

    generator, _, subspaces, _ = setting
    parser = FixedRegionParser()
    data = shortcut_dataset(generator, parser, 1200, region="left", reference="background", seed=3)
    result = planted_shortcut_check(generator, parser, subspaces, planted="left_colour", region="left",
                                    reference="background", seed=0, n=10, data=data, unit="latent", budget=4.0, joint=False,
                                    attribution=False, train_options={"n_train": 1200, "epochs": 8})
    assert result.val_accuracy > 0.75  # the CNN learned the planted rule
    assert result.ranking[0] == "left_colour" and result.passed and result.planted == "left_colour"
    table = result.table.set_index("semantic")
    assert table.loc["left_colour", "flip_rate"] > table.loc["right_colour", "flip_rate"]


def test_shortcut_scores_are_region_redness_with_or_without_a_reference(setting):
    from cfexplain.trust import shortcut_dataset

    generator = setting[0]
    parser = FixedRegionParser()
    images, left = shortcut_dataset(generator, parser, 6, region="left", reference=None, seed=5)
    _, background = shortcut_dataset(generator, parser, 6, region="background", reference=None, seed=5)
    _, difference = shortcut_dataset(generator, parser, 6, region="left", reference="background", seed=5)
    mask = parser.parse(images).mask("left", soft=False)[:, 0]
    redness = images[:, 0] - (images[:, 1] + images[:, 2]) / 2
    assert torch.allclose(left, (redness * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)), atol=1e-6)
    assert torch.allclose(difference, left - background, atol=1e-6)


def test_saved_results_of_another_format_or_damaged_are_refused(setting, tmp_path):
    from cfexplain.errors import CorruptCheckpointError

    generator, classifier, subspaces, semantics = setting
    result = audit(generator, classifier, subspaces, faces=3, seed=1, joint=False, controls=0, progress=False)
    folder = result.save(tmp_path / "audit")
    subspaces.save(tmp_path / "subspaces")
    cases = [(folder / "audit.json", AuditResult.load, folder),
             (folder / "counterfactuals" / "result.json", CounterfactualResult.load, folder / "counterfactuals"),
             (tmp_path / "subspaces" / "subspaces.json", SubspaceSet.load, tmp_path / "subspaces")]
    for file, load, saved in cases:
        original = file.read_text()
        file.write_text(re.sub(r'"format_version": \d+', '"format_version": 99', original, count=1))
        with pytest.raises(CorruptCheckpointError, match="format 99"):
            load(saved)
        file.write_text("{ not json")
        with pytest.raises(CorruptCheckpointError, match="not a readable"):
            load(saved)
        file.write_text(original)


def test_quadratic_first_guess_of_the_boundary_search():
    from cfexplain.counterfactual.search import _quadratic_root

    # q(t) = 3t² + t − 1 (convex) and q(t) = −2t² + 4t − 1 (concave): one root each in (0, 1)
    value0, slope0 = torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 4.0])
    value1 = torch.tensor([3.0, 1.0])
    roots = _quadratic_root(value0, slope0, value1)
    expected = torch.tensor([(-1 + 13 ** 0.5) / 6, (4 - 8 ** 0.5) / 4])
    assert torch.allclose(roots, expected, atol=1e-6)
    assert torch.allclose(value0 + slope0 * roots + (value1 - value0 - slope0) * roots**2, torch.zeros(2), atol=1e-5)
    # linear (no curvature), unknown slope, and no sign change
    assert torch.allclose(_quadratic_root(torch.tensor([-1.0]), torch.tensor([4.0]), torch.tensor([3.0])), torch.tensor([0.25]))
    assert torch.isnan(_quadratic_root(torch.tensor([-1.0]), torch.tensor([float("nan")]), torch.tensor([1.0]))).all()
    assert torch.isnan(_quadratic_root(torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor([-0.5]))).all()


class _NaNAfter(nn.Module):
    """LeftRedness until ``calls`` forward passes have run, then NaN."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.inner, self.calls = LeftRedness(), calls

    def forward(self, x):
        self.calls -= 1
        return self.inner(x) if self.calls >= 0 else torch.full((x.shape[0], 2), float("nan"))


def test_an_error_midway_keeps_the_finished_batches(setting):
    generator, classifier, subspaces, _ = setting
    options = dict(batch_size=4, unit="latent", budget=4.0, progress=False)
    codes = generator.sample(4, space="z", seed=3)
    clean = CounterfactualExplainer(generator, classifier, subspaces, **options).explain(codes)  # 8 items, 2 batches
    counting = _NaNAfter(10**6)
    CounterfactualExplainer(generator, Classifier(counting, output=OutputSpec.softmax(["blue", "red"])), subspaces,
                            **options).explain(codes[:2])  # the original decisions and the first batch
    first_batch = 10**6 - counting.calls
    failing = Classifier(_NaNAfter(first_batch), output=OutputSpec.softmax(["blue", "red"]))
    with pytest.raises(ModelOutputError, match="NaN") as caught:
        CounterfactualExplainer(generator, failing, subspaces, **options).explain(codes)  # the second batch fails
    partial = caught.value.partial_result
    assert isinstance(partial, CounterfactualResult) and len(partial.table) == 4
    kept = partial.to_dataframe()
    expected = clean.to_dataframe().iloc[:4]
    assert (kept["face"].to_numpy() == expected["face"].to_numpy()).all()
    assert (kept["flipped"].to_numpy() == expected["flipped"].to_numpy()).all()
    assert np.allclose(kept["min_edit"], expected["min_edit"], equal_nan=True)
    assert torch.equal(partial.codes, clean.codes)

    with pytest.raises(ModelOutputError) as first:  # nothing finished: nothing attached
        CounterfactualExplainer(generator, Classifier(_NaNAfter(1), output=OutputSpec.softmax(["blue", "red"])),
                                subspaces, **options).explain(5)
    assert getattr(first.value, "partial_result", None) is None


def test_an_audit_that_fails_after_the_search_keeps_it(setting):
    generator, classifier, subspaces, semantics = setting

    class Failing(nn.Module):
        def forward(self, images):
            raise RuntimeError("analyzer broke")

    from cfexplain.criteria import FunctionCriterion
    from cfexplain.subspaces import Semantic

    broken = [Semantic(s.name, s.target, keep=[FunctionCriterion(Failing(), name="broken")]) for s in semantics]
    with pytest.raises(RuntimeError, match="analyzer broke") as caught:
        audit(generator, classifier, subspaces, faces=4, unit="latent", budget=4.0, semantics=broken, controls=0,
              progress=False)
    partial = caught.value.partial_result
    assert isinstance(partial, CounterfactualResult) and len(partial.table) == 4 * (len(subspaces) + 1)  # + the baseline


def test_options_for_one_call(setting):
    generator, classifier, subspaces, _ = setting
    explainer = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", budget=4.0, progress=False)
    wide = explainer.explain(6, subspaces=["left_colour"]).to_dataframe()
    narrow_result = explainer.explain(6, subspaces=["left_colour"], budget=0.3, margin=0.2)
    narrow = narrow_result.to_dataframe()
    assert (narrow["end_edit"] <= 0.3 + 1e-5).all() and wide["end_edit"].max() > 0.3
    assert narrow["flipped"].sum() < wide["flipped"].sum()
    assert narrow_result.settings["budget"] == 0.3 and narrow_result.settings["margin"] == 0.2
    assert explainer.settings.budget == 4.0 and explainer.settings.margin == 0.5  # the explainer itself is unchanged
    adam = explainer.explain(2, subspaces=["left_colour"], optimizer="adam")
    assert adam.settings["optimizer"] == "adam" and adam.settings["steps"] == 100  # Adam's own default
    with pytest.raises(InputError, match="unknown option"):
        explainer.explain(2, bugdet=1.0)


def test_explain_resumes_from_its_checkpoint(setting, tmp_path, monkeypatch):
    """Killed in its third batch, a search resumes from its checkpoint: only the batches not yet
    finished are searched again, and the result equals an uninterrupted search."""
    generator, classifier, subspaces, _ = setting
    explainer = CounterfactualExplainer(generator, classifier, subspaces, batch_size=2, unit="latent", budget=4.0,
                                        progress=False)
    codes = generator.sample(3, space="z", seed=5)  # 6 items, 3 batches
    clean = explainer.explain(codes)
    real, searched = CounterfactualExplainer._search_chunk, []

    def dies_in_the_third_batch(self, chunk, records):
        if len(searched) == 2:
            raise KeyboardInterrupt
        searched.append(chunk.rows.tolist())
        return real(self, chunk, records)

    monkeypatch.setattr(CounterfactualExplainer, "_search_chunk", dies_in_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        explainer.explain(codes, checkpoint_dir=tmp_path)
    searched.clear()
    monkeypatch.setattr(CounterfactualExplainer, "_search_chunk",
                        lambda self, chunk, records: searched.append(chunk.rows.tolist()) or real(self, chunk, records))
    resumed = explainer.explain(codes, checkpoint_dir=tmp_path)
    assert searched == [[4, 5]]
    pd.testing.assert_frame_equal(resumed.to_dataframe(), clean.to_dataframe())
    assert torch.equal(resumed.deltas, clean.deltas)
    searched.clear()
    explainer.explain(codes, target="red", checkpoint_dir=tmp_path)  # another target: a search of its own
    assert len(searched) == 3


def test_audit_resumes_its_finished_stages(setting, tmp_path, monkeypatch):
    """An audit killed in its joint search resumes with every search before it done: no item of
    the main, random-control or baseline searches is searched again."""
    generator, classifier, subspaces, semantics = setting
    options = dict(faces=8, seed=1, unit="latent", budget=4.0, semantics=semantics, progress=False)
    clean = audit(generator, classifier, subspaces, **options)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(CounterfactualExplainer, "explain_jointly", killed)  # the joint search stage
    with pytest.raises(KeyboardInterrupt):
        audit(generator, classifier, subspaces, checkpoint_dir=tmp_path, **options)
    monkeypatch.undo()
    real, searched = CounterfactualExplainer._search_chunk, []
    monkeypatch.setattr(CounterfactualExplainer, "_search_chunk",
                        lambda self, chunk, records: searched.append(len(chunk.rows)) or real(self, chunk, records))
    resumed = audit(generator, classifier, subspaces, checkpoint_dir=tmp_path, **options)
    assert searched == []
    pd.testing.assert_frame_equal(resumed.to_dataframe(), clean.to_dataframe())
    pd.testing.assert_frame_equal(resumed.joint, clean.joint)


def test_faces_auto_adds_rounds_until_decided_and_matches_a_fixed_audit(setting, monkeypatch):
    """``faces="auto"`` stops once every verdict is decided; when it goes on, its rounds give the faces'
    results a fixed audit of as many faces gives, and its looks share ``alpha``."""
    core = importlib.import_module("cfexplain.audit.core")
    generator, classifier, subspaces, semantics = setting
    options = dict(seed=1, unit="latent", budget=4.0, semantics=semantics, joint=False, controls=4, progress=False)
    decided = audit(generator, classifier, subspaces, faces="auto", max_faces=48, **options)
    assert decided.settings["n"] == 32 and decided.settings["looks"] == 2
    assert decided.settings["alpha_per_look"] == pytest.approx(0.025)
    assert decided.verdict("left_colour") == "evidence"
    monkeypatch.setattr(core, "_open_verdicts", lambda summary: ["right_colour"])  # never decided: every round
    rounds = audit(generator, classifier, subspaces, faces="auto", max_faces=48, **options)
    fixed = audit(generator, classifier, subspaces, 48, **options)
    assert rounds.settings["n"] == 48
    columns = ["face", "subspace", "flipped", "min_edit", "sensitivity"]
    pd.testing.assert_frame_equal(rounds.counterfactuals.table[columns], fixed.counterfactuals.table[columns],
                                  atol=1e-5)
    for column in ("flip_rate", "side_effect", "random_flip_rate", "effect"):
        assert np.allclose(rounds.table.set_index("semantic")[column], fixed.table.set_index("semantic")[column],
                           atol=1e-5, equal_nan=True), column
