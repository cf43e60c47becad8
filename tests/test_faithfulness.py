"""Faithfulness machinery: channel styles, specificity against random directions, the contrast
solver, edit units, the equal-image-change ranking, and the planted-shortcut measurements."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from cfexplain.audit import audit
from cfexplain.counterfactual import CounterfactualExplainer, edit_bases, edit_basis, image_metric
from cfexplain.criteria import RegionPixels
from cfexplain.distributed import SINGLE_PROCESS
from cfexplain.errors import InputError, ShapeError
from cfexplain.generators import ChannelStyleGenerator
from cfexplain.subspaces import (LowSpecificityWarning, Semantic, Subspace, SubspaceSet, learn_subspaces,
                                 measure_specificity, solve_contrast)
from cfexplain.trust import NEGATIVE_CONTROLS, PLANTED_MEASUREMENTS, matched_sample, planted_measurement
from cfexplain.trust.measurements import eyelid_gap
from synthetic import FixedRegionParser, planted_rule_setting, region_generator


class TinyConvGenerator(nn.Module):
    """z (8) → 4×4×6 → ReLU → 8×8×4 → ReLU → 3×16×16."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.main = nn.Sequential(nn.ConvTranspose2d(8, 6, 4, 1, 0), nn.ReLU(), nn.ConvTranspose2d(6, 4, 4, 2, 1), nn.ReLU(),
                                  nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.main(z)


@pytest.fixture(scope="module")
def styled():
    return ChannelStyleGenerator(TinyConvGenerator(), (8, 1, 1), layers=["main.1", "main.3"], calibration_samples=64)


def test_channel_styles_extend_z_and_scale_single_channels(styled):
    layout = styled.style_layout
    assert styled.spaces == ("z", "s") and layout.z_dim == 8
    assert styled.latent_shape("s") == (8 + layout.styles,) and layout.styles <= 10
    z = styled.sample(3, seed=1)
    s = styled.convert(z, "z", "s")
    assert torch.equal(s[:, :8], z) and torch.all(s[:, 8:] == 0)
    with torch.no_grad():
        assert torch.allclose(styled.synthesize(s, space="s"), styled.synthesize(z), atol=1e-6)
    # one style multiplies its channel by exp(κ · g): check against a hand-made forward pass
    entry = layout["main.3"]
    channel = entry.channels[0]
    edited = s.clone()
    edited[:, layout.index("main.3", channel)] = 1.5
    net = styled.module
    with torch.no_grad():
        h = net.main[:4](z.reshape(3, 8, 1, 1)).clone()
        h[:, channel] *= math.exp(1.5 * entry.scales[0])
        expected = net.main[4:](h)
        assert torch.allclose(styled.synthesize(edited, space="s"), expected, atol=1e-5)
    # the scale of edit budgets: one unit per style, the sampled spread for z
    directions = torch.eye(styled.latent_dim("s"))[:, [0, 8]]
    scale = styled.edit_scale("s", directions)
    assert abs(float(scale[1]) - 1.0) < 1e-6 and 0.8 < float(scale[0]) < 1.2


def test_channel_styles_refuse_bad_layers(styled):
    with pytest.raises(InputError, match="no layers named"):
        ChannelStyleGenerator(TinyConvGenerator(), (8, 1, 1), layers=["main.99"])
    with pytest.raises(InputError, match="at least one"):
        ChannelStyleGenerator(TinyConvGenerator(), (8, 1, 1), layers=[])
    with pytest.raises(InputError, match="no styled layer"):
        styled.style_layout.index("main.0", 0)
    with pytest.raises(InputError, match="cannot convert"):
        styled.convert(styled.convert(styled.sample(1), "z", "s"), "s", "z")
    with pytest.raises(ShapeError):
        styled.synthesize(styled.sample(2), space="s")  # z codes given for s


def test_contrast_solver_finds_the_specific_direction():
    # target moves along e0 and e1; the keep criterion moves strongly along e1 and e2: e0 is the
    # only direction specific to the target
    target = np.diag([1.0, 3.0, 0.0, 0.0])
    keep = np.diag([0.0, 5.0, 5.0, 0.1])
    result = solve_contrast(target, [keep], target_ratio=0.5, epsilon=0.01)
    assert result.basis.shape[1] == 1 and abs(abs(result.basis[0, 0]) - 1) < 1e-6
    assert solve_contrast(target, [keep], target_ratio=1e-6, max_directions=2).basis.shape[1] == 2
    with pytest.raises(InputError, match="epsilon"):
        solve_contrast(target, [keep], target_ratio=0.5, epsilon=0)


def _left_semantic(parser, solver="contrast", **options):
    return Semantic("left_colour", RegionPixels(parser, "left", resolution=None),
                    [RegionPixels(parser, "left", inside=False, resolution=None)], solver=solver, **options)


def test_specificity_of_a_planted_subspace_beats_random_and_a_random_subspace_does_not():
    generator, net = region_generator(dim=12, seed=0)
    parser = FixedRegionParser()
    semantic = _left_semantic(parser)
    true = Subspace("left_colour", net.true_subspace(slice(0, 3)).float(), torch.ones(3), "z", (12,))
    q = torch.linalg.qr(torch.randn(12, 3, generator=torch.Generator().manual_seed(1)))[0]
    scores = {}
    for name, subspace in (("true", true), ("random", Subspace("left_colour", q, torch.ones(3), "z", (12,)))):
        scores[name] = measure_specificity(generator, [semantic], SubspaceSet([subspace]), n_samples=6)["left_colour"]
    assert scores["true"].specificity > 5 and scores["true"].better_than_random
    assert scores["true"].keep_gains["outside:left"] < 0.1
    assert 0.4 < scores["random"].specificity < 2.5  # a random subspace scores about 1
    low, high = scores["true"].interval
    assert low <= scores["true"].specificity <= high
    again = type(scores["true"]).from_dict(scores["true"].to_dict())
    assert again == scores["true"]


def test_learn_records_specificity_and_warns_by_name_for_a_weak_semantic():
    generator, _ = region_generator(dim=12, seed=0)
    parser = FixedRegionParser()
    good = _left_semantic(parser, target_ratio=1e-4)
    # a target that is also to be kept: whatever moves one moves the other, no better than random
    weak = Semantic("weak", RegionPixels(parser, "right", resolution=None),
                    [RegionPixels(parser, "right", resolution=None)], solver="contrast", max_directions=3)
    with pytest.warns(LowSpecificityWarning, match="'weak'") as caught:
        learned = learn_subspaces(generator, [good, weak], space="z", n_samples=4, progress=False)
    assert not any("'left_colour'" in str(w.message) for w in caught)
    table = learned.specificity_table().set_index("semantic")
    assert table.loc["left_colour", "specificity"] > 3 and table.loc["weak", "specificity"] < 1.5
    assert learned["weak"].dim == 3  # max_directions
    assert "specificity" in learned["left_colour"].provenance
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowSpecificityWarning)
        skipped = learn_subspaces(generator, [weak], space="z", n_samples=2, specificity_samples=0, progress=False)
    assert len(skipped.specificity_table()) == 0


def test_image_unit_whitens_a_subspace_by_its_image_change():
    generator, classifier, subspaces, _ = planted_rule_setting()
    subspace = subspaces["left_colour"]
    scaled = edit_basis(generator, subspace, "image", image_samples=8)
    metric = image_metric(generator, scaled, "z", n_samples=8)
    assert torch.allclose(metric, torch.eye(subspace.dim, dtype=metric.dtype), atol=1e-4)
    # an edit of size 0.05 in image units changes the image by about 0.05 RMS
    codes = generator.sample(8, seed=7919 + 7919)  # not the metric's faces
    alpha = torch.randn(8, subspace.dim, generator=torch.Generator().manual_seed(3))
    alpha = 0.05 * alpha / alpha.norm(dim=1, keepdim=True)
    with torch.no_grad():
        change = generator.synthesize(codes + alpha @ scaled.T) - generator.synthesize(codes)
    rms = change.square().mean(dim=(1, 2, 3)).sqrt()
    assert 0.03 < float(rms.mean()) < 0.07
    with pytest.raises(InputError, match="unit"):
        edit_basis(generator, subspace, "pixels")


def test_a_scaled_basis_is_measured_once_per_generator_until_its_weights_change(monkeypatch):
    from cfexplain.counterfactual import units

    generator, _, subspaces, _ = planted_rule_setting()
    subspace = subspaces["left_colour"]
    calls = []
    measure = units.image_metric
    monkeypatch.setattr(units, "image_metric", lambda *args, **kwargs: calls.append(1) or measure(*args, **kwargs))
    first = edit_basis(generator, subspace, "image", image_samples=4)
    again = edit_basis(generator, subspace, "image", image_samples=4)
    assert len(calls) == 1 and torch.equal(first, again)
    again.zero_()  # the caller's copy: the remembered basis is unchanged
    assert torch.equal(edit_basis(generator, subspace, "image", image_samples=4), first) and len(calls) == 1
    edit_basis(generator, subspace, "image", image_samples=5)  # other settings: measured
    assert len(calls) == 2
    with torch.no_grad():
        next(itertools.chain(generator.parameters(), generator.buffers())).mul_(2.0)  # changed in place: measured again
    changed = edit_basis(generator, subspace, "image", image_samples=4)
    assert len(calls) == 3 and not torch.allclose(changed, first)


def test_subspaces_measured_together_project_the_whole_space_metric(monkeypatch):
    """Subspaces with more directions than the space has dimensions: one whole-space measurement
    (D directions), projected, gives what measuring each subspace gives."""
    from cfexplain.audit.stages.control import random_subspaces
    from cfexplain.counterfactual import units

    generator, _, subspaces, _ = planted_rule_setting()
    drawn = random_subspaces(subspaces, list(subspaces), count=5, seed=0)  # 5 × 3 directions > D = 12
    assert sum(s.dim for s in drawn.values()) > generator.latent_dim("z")
    one_by_one = [units._scaled_basis(generator, s, "image", 2000, 4, 12, SINGLE_PROCESS) for s in drawn.values()]
    calls = []
    measure = units.image_metric
    monkeypatch.setattr(units, "image_metric", lambda g, d, *a, **k: calls.append(d.shape) or measure(g, d, *a, **k))
    together = edit_bases(generator, list(drawn.values()), "image", image_samples=4, seed=12)
    assert calls == [(12, 12)]
    again = edit_bases(generator, list(drawn.values()), "image", image_samples=4, seed=12)
    assert len(calls) == 1 and all(torch.equal(a, b) for a, b in zip(together, again))
    for single, joint in zip(one_by_one, together):
        torch.testing.assert_close(joint, single, rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="one latent space"):
        edit_bases(generator, [subspaces["left_colour"], Subspace("other", torch.eye(3, 2), torch.ones(2), "w", (3,))],
                   "image")


def test_explainer_budget_follows_its_unit():
    generator, classifier, subspaces, _ = planted_rule_setting()
    image = CounterfactualExplainer(generator, classifier, subspaces, progress=False)
    latent = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", progress=False)
    assert (image.settings.unit, image.settings.budget) == ("image", 0.2)
    assert (latent.settings.unit, latent.settings.budget) == ("latent", 3.0)
    result = image.explain(6, subspaces=["left_colour"])
    table = result.to_dataframe()
    assert result.settings["unit"] == "image" and (table["end_edit"] <= 0.2 + 1e-5).all()
    assert (table["sensitivity"] > 0).all()
    flipped = table[table["flipped"]]  # the measured image change at the minimal edit is close to the edit
    assert len(flipped) and np.allclose(flipped["pixel_l2"], flipped["min_edit"], rtol=0.35)
    assert image.with_options(unit="latent").settings.budget == 3.0
    for bad in (float("nan"), float("inf"), -1.0, 0.0):
        with pytest.raises(InputError, match="budget"):
            CounterfactualExplainer(generator, classifier, subspaces, budget=bad)
    with pytest.raises(InputError, match="unit"):
        CounterfactualExplainer(generator, classifier, subspaces, unit="sigma")


def test_audit_says_plainly_when_nothing_flips():
    generator, classifier, subspaces, semantics = planted_rule_setting()
    result = audit(generator, classifier, subspaces, faces=6, budget=1e-4, joint=False, progress=False)
    assert result.nothing_flipped and "Nothing flipped" in result.summary()
    assert "no evidence either way" in result.headline()
    table = result.table.set_index("semantic")
    assert (table["rank"] == 1).all() and (table["verdict"] != "evidence").all()  # nothing tells them apart
    assert {"sensitivity", "random_sensitivity", "random_median_min_edit"} <= set(result.table.columns)
    flipping = audit(generator, classifier, subspaces, faces=6, joint=False, progress=False)
    assert not flipping.nothing_flipped and "Nothing flipped" not in flipping.summary()


def test_planted_measurements_and_matching():
    assert set(PLANTED_MEASUREMENTS) == {"skin_luminance", "skin_hue", "lip_redness", "eye_brightness", "eye_openness",
                                         "mouth_opening", "jaw_width"}
    assert {m.semantic for m in NEGATIVE_CONTROLS.values()} == {None}
    assert planted_measurement("lip_redness").semantic == "lip_colour"
    with pytest.raises(InputError, match="unknown planted measurement"):
        planted_measurement("nose_length")
    g = torch.Generator().manual_seed(0)
    confounder = torch.randn(3000, generator=g)
    score = 0.8 * confounder + 0.6 * torch.randn(3000, generator=g)  # correlated 0.8
    chosen = matched_sample(score, confounder[:, None], 800)
    label = (score[chosen] > score.median()).float()
    assert len(chosen) == 800 and label.mean() == 0.5
    assert abs(float(np.corrcoef(label.numpy(), confounder[chosen].numpy())[0, 1])) < 0.1
    assert float(np.corrcoef(label.numpy(), score[chosen].numpy())[0, 1]) > 0.3
    with pytest.raises(InputError, match="confounders"):
        matched_sample(score, confounder[:10, None], 100)


def test_eyelid_gap_is_the_lid_distance_over_the_eye_width():
    corners = [(0.0, 0.0)] + [(float(x), 1.5) for x in range(1, 8)] + [(8.0, 0.0)]  # 0, lower lid 1–7, 8
    upper = [(float(x), -0.5) for x in range(7, 0, -1)]  # 9–15
    eye = torch.tensor([corners + upper])
    assert torch.allclose(eyelid_gap(eye), torch.tensor([2.0 / 8.0]))
    wider = eye * torch.tensor([1.0, 2.0])  # the eye opened twice as wide, same width
    assert torch.allclose(eyelid_gap(wider), 2 * eyelid_gap(eye))
    assert torch.allclose(eyelid_gap(eye * 3 + 5), eyelid_gap(eye))  # no scale or position


def test_the_answer_in_words_matches_the_verdicts():
    """The headline and the summary name what has evidence, say plainly when nothing has, and say
    when the decision reacts to a semantic whose subspace cannot tell."""
    from cfexplain.audit import AuditResult

    def result(verdicts, p_values, effect_high=(0.9, 0.9)) -> AuditResult:
        table = pd.DataFrame({"semantic": ["eye_shape", "lip_colour"], "verdict": verdicts, "rank": [1, 1],
                              "effect": [0.8, 0.7], "effect_low": [0.7, 0.6], "effect_high": list(effect_high),
                              "p_value": p_values, "edit_ratio": [2.0, 1.5], "flip_rate": [0.9, 0.5],
                              "random_flip_rate": [0.6, 0.6], "specificity": [1.2, 3.0],
                              "reason": ["its subspace is not specific enough (specificity 1.20)", "…"]})
        return AuditResult(table, None, pd.DataFrame(), {"detectable_effect": 0.63}, "flip",
                           {"unit": "image", "budget": 0.2, "alpha": 0.05, "n": 32})

    claim = result(["cannot tell", "evidence"], [0.2, 0.001])
    assert claim.headline() == "Evidence that the decision depends on lip_colour"
    assert "lip_colour (easier than a random edit in 70% of face-by-face comparisons, 95 % interval 60%–90%" \
        in claim.summary() and "needing 1.5× less image change" in claim.summary()
    undecided = result(["cannot tell", "no evidence"], [0.001, 0.3])
    assert undecided.headline().startswith("Cannot tell: the decision reacts to eye_shape")
    assert "specificity 1.20): cannot tell whether the classifier uses it" in undecided.summary()
    nothing = result(["cannot tell", "no evidence"], [0.4, 0.3], effect_high=(0.55, 0.6))
    assert nothing.headline() == ("No evidence: no semantic moves the decision more easily than a random edit of the "
                                  "same size; the decision depends on something none of these semantics captures")
    alike = result(["no evidence", "no evidence"], [0.001, 0.01])  # both beat random, neither the other
    assert alike.headline() == ("No evidence: the decision reacts to eye_shape, lip_colour more easily than to random "
                                "edits, but to none more than to the other semantics")
    assert "no semantic moves" not in alike.summary().lower()
    underpowered = result(["cannot tell", "no evidence"], [0.4, 0.3], effect_high=(0.7, 0.8))
    assert "none of these semantics captures" not in underpowered.headline()
    assert "with more faces one might" in underpowered.summary() and "With 32 faces, effects below 0.63" \
        in underpowered.summary()
