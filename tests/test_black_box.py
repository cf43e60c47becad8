"""Black-box classifiers: functions of image arrays and ONNX files run by onnxruntime, audited from
queries only (finite-difference Newton steps, Shapley attribution), against the gradient audit of
the same model."""

from __future__ import annotations

import json
import math

import jsonschema
import numpy as np
import pytest
import torch
from torch import nn

from cfexplain.audit import audit
from cfexplain.black_box import QueryFunction
from cfexplain.classifiers import Classifier, OutputSpec, Preprocessing
from cfexplain.counterfactual import CounterfactualExplainer, SearchSettings
from cfexplain.counterfactual import queries as query_search
from cfexplain.errors import InputError, ModelOutputError, UnsupportedModelError
from synthetic import LeftRedness, planted_rule_setting


@pytest.fixture(scope="module")
def setting():
    return planted_rule_setting()


def _left_redness_function():
    """The planted classifier as a service would offer it: uint8 NHWC pixels in, probabilities out."""
    network = LeftRedness()

    def predict(pixels: np.ndarray) -> np.ndarray:
        assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255  # the planted classifier reads [0, 1]
        with torch.no_grad():
            return network(x).softmax(dim=1).numpy()

    return predict


OPTIONS = dict(faces=8, seed=1, unit="latent", budget=4.0, progress=False)


def test_a_black_box_audit_agrees_with_the_gradient_audit(setting, tmp_path):
    generator, classifier, subspaces, semantics = setting
    black_box = Classifier.from_function(_left_redness_function(),
                                         output=OutputSpec.softmax(["blue", "red"], scores="probabilities"))
    assert not black_box.differentiable and classifier.differentiable
    gradient = audit(generator, classifier, subspaces, semantics=semantics, **OPTIONS)
    queried = audit(generator, black_box, subspaces, semantics=semantics, **OPTIONS)
    by_gradient, by_queries = (r.to_dataframe().set_index("semantic") for r in (gradient, queried))
    assert queried.ranking()[0] == gradient.ranking()[0] == "left_colour"
    assert (by_queries["flip_rate"] - by_gradient["flip_rate"]).abs().max() <= 0.125  # one face of 8
    edits = by_queries.loc["left_colour", "median_min_edit"] / by_gradient.loc["left_colour", "median_min_edit"]
    assert 0.9 < edits < 1.1
    # the sensitivity is estimated from queries, not left NaN: forward differences ≈ the gradient
    assert math.isclose(by_queries.loc["left_colour", "sensitivity"], by_gradient.loc["left_colour", "sensitivity"],
                        rel_tol=0.1)
    items = queried.counterfactuals.table
    assert items["queries"].between(1, 200).all() and by_queries["median_queries"].notna().all()
    assert "median_queries" not in by_gradient and queried.metrics["median_queries"] > 0
    # the joint counterfactuals are attributed by exact Shapley values (2 semantics: 3 queries per face)
    assert queried.settings["attribution_method"] == "shapley_exact"
    assert gradient.settings["attribution_method"] == "integrated_gradients"
    assert by_queries.loc["left_colour", "attribution"] > 0.9
    assert abs(queried.metrics["shapley_relative_delta"]) < 1e-4
    assert (queried.joint["attribution_queries"] == 3).all()
    # the latent-gradient control needs gradients: not run, and the report says so
    assert len(gradient.baseline) == 1 and len(queried.baseline) == 0 and queried.settings["black_box"]
    from cfexplain.report import ReportSection, load_results_schema, write_report

    paths = write_report(tmp_path, generator, subspaces, [ReportSection("left redness, queried", queried, black_box)])
    page = paths["report"].read_text()
    assert "not available for a black-box audit" in page and "exact Shapley values" in page and ">queries<" in page
    jsonschema.validate(json.loads(paths["results"].read_text()), load_results_schema())
    assert black_box.queries > 0 and black_box._function.cache_hits > 0  # repeated images were not sent again


def test_black_box_true_searches_a_torch_classifier_from_queries(setting):
    generator, classifier, subspaces, _ = setting
    explainer = CounterfactualExplainer(generator, classifier, subspaces, unit="latent", budget=4.0, progress=False)
    by_gradient = explainer.explain(6)
    by_queries = explainer.explain(6, black_box=True, max_queries=40)
    assert by_queries.settings["black_box"] and "queries" not in by_gradient.table
    agree = (by_gradient.table["flipped"].to_numpy() == by_queries.table["flipped"].to_numpy()).mean()
    assert agree >= 5 / 6
    assert by_queries.table["queries"].max() <= 40  # the budget holds, root search included
    flipped = by_gradient.table["flipped"] & by_queries.table["flipped"]
    np.testing.assert_allclose(by_queries.table.loc[flipped, "min_edit"], by_gradient.table.loc[flipped, "min_edit"],
                               rtol=0.1)
    with pytest.raises(InputError, match="baseline=False"):
        explainer.explain(2, black_box=True, baseline=True)


def test_shapley_values_exact_and_sampled(setting, monkeypatch):
    """On a classifier whose gap is linear in the stacked coefficients, every semantic's Shapley
    value is its own part of the change, exact or sampled from orders."""
    generator, _, subspaces, _ = setting

    class Linear(nn.Module):
        def forward(self, x):
            score = 5 * x.mean(dim=(1, 2, 3))
            return torch.stack([-score, score], dim=1)

    explainer = CounterfactualExplainer(generator, Classifier(Linear(), output=OutputSpec.softmax(["a", "b"])),
                                        subspaces, unit="latent", progress=False)
    names = list(subspaces)
    blocks = [explainer._edit_basis(name) for name in names]
    problem = explainer._problem(explainer._faces(3), "flip", [torch.cat(blocks, dim=1)], every_pair=False)
    chunk = problem.chunk(torch.arange(3), with_images=False)
    groups = torch.cat([torch.full((b.shape[1],), g) for g, b in enumerate(blocks)])
    alpha = torch.randn(3, len(groups), generator=torch.Generator().manual_seed(0)) * 0.01
    exact_change, exact, exact_delta, exact_queries = query_search.shapley_attribution(chunk, alpha, groups, 2, 64)
    assert (exact_queries == 3).all() and exact_delta.abs().max() < 1e-5
    monkeypatch.setattr(query_search, "EXACT_SHAPLEY_MAX", 1)
    sampled_change, sampled, sampled_delta, _ = query_search.shapley_attribution(chunk, alpha, groups, 2, 64)
    torch.testing.assert_close(sampled, exact, atol=1e-3, rtol=1e-2)  # near-linear: every order agrees
    torch.testing.assert_close(sampled_change, exact_change)


def test_query_function_checks_batches_and_caches():
    calls = []

    def probabilities(pixels):
        calls.append(len(pixels))
        p = pixels.reshape(len(pixels), -1).mean(axis=1, dtype=np.float64) / 255
        return np.stack([1 - p, p], axis=1)

    classifier = Classifier.from_function(probabilities, output=OutputSpec.softmax(["dark", "bright"],
                                                                                    scores="probabilities"),
                                          batch_size=3)
    images = torch.rand(7, 3, 8, 8) * 2 - 1
    first = classifier.probabilities(images)
    assert calls == [3, 3, 1] and classifier.queries == 7
    again = classifier.probabilities(images[:4])  # the same images: answered from the cache
    assert calls == [3, 3, 1] and classifier.queries == 7 and classifier._function.cache_hits == 4
    torch.testing.assert_close(again, first[:4])
    grouped = classifier.grouped({"dark": ["dark"], "bright": ["bright"]})
    assert not grouped.differentiable and grouped.queries == classifier.queries  # a grouped black box is one too
    # float NCHW in [0, 1]
    seen = {}

    def record(x):
        seen["array"] = x
        return np.zeros((len(x), 2))

    Classifier.from_function(record, output=OutputSpec.softmax(["a", "b"]), layout="NCHW", dtype="float32").logits(images)
    assert seen["array"].dtype == np.float32 and seen["array"].shape == (7, 3, 8, 8)
    assert 0 <= seen["array"].min() and seen["array"].max() <= 1


@pytest.mark.parametrize("answer, message", [
    (lambda x: np.zeros((len(x), 3)), r"expected \(N, 2\)"),
    (lambda x: np.zeros(len(x) + 1), "one row per image"),
    (lambda x: np.full((len(x), 2), np.nan), "NaN"),
    (lambda x: np.full((len(x), 2), 0.7), "do not sum to one"),
    (lambda x: "not scores", "not an array of scores"),
    (lambda x: 1 / 0, "ZeroDivisionError"),
])
def test_bad_black_box_answers_are_refused(answer, message):
    classifier = Classifier.from_function(answer, output=OutputSpec.softmax(["a", "b"], scores="probabilities"))
    with pytest.raises(ModelOutputError, match=message):
        classifier.logits(torch.zeros(2, 3, 8, 8))


def test_bad_black_box_declarations_are_refused():
    spec = OutputSpec.softmax(["a", "b"])
    with pytest.raises(InputError, match="value_range must be \\(0, 255\\)"):
        Classifier.from_function(lambda x: x, output=spec, preprocessing=Preprocessing(value_range=(0, 1)))
    with pytest.raises(InputError, match="layout"):
        Classifier.from_function(lambda x: x, output=spec, layout="HWC")
    with pytest.raises(InputError, match="dtype"):
        Classifier.from_function(lambda x: x, output=spec, dtype="int16")
    with pytest.raises(InputError, match="callable"):
        QueryFunction("not a function")
    with pytest.raises(InputError, match="Adam needs the gradient"):
        SearchSettings(black_box=True, optimizer="adam")
    with pytest.raises(InputError, match="max_queries"):
        SearchSettings(black_box=True, max_queries=10)


def test_an_onnx_file_with_an_unsupported_operator_is_audited_as_a_black_box(setting, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency: pip install '.[test]'")
    from onnx import TensorProto, helper, numpy_helper

    generator, classifier, subspaces, semantics = setting
    readout = LeftRedness().readout.numpy()
    weights = np.zeros((3, 16, 16), np.float32)
    weights[:, 2:8, 2:8] = 3 * readout  # LeftRedness as a linear read-out of the whole image
    nodes = [helper.make_node("LRN", ["x"], ["normalised"], size=1, alpha=1e-9, beta=1.0, bias=1.0),  # ≈ the identity
             helper.make_node("Flatten", ["normalised"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["score"]),
             helper.make_node("Concat", ["negative", "score"], ["logits"], axis=1),
             helper.make_node("Softmax", ["logits"], ["p"], axis=-1)]
    nodes.insert(3, helper.make_node("Neg", ["score"], ["negative"]))
    graph = helper.make_graph(nodes, "left", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 2])],
                              [numpy_helper.from_array(weights.reshape(-1, 1), "w")])
    path = tmp_path / "left.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    spec = OutputSpec.softmax(["blue", "red"])
    with pytest.raises(UnsupportedModelError, match="LRN.*black_box=True"):
        Classifier.from_onnx(path, output=spec)
    black_box = Classifier.from_onnx(path, output=spec, black_box=True)
    assert not black_box.differentiable and black_box.output.scores == "probabilities"  # its softmax, read
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(black_box.probabilities(images), classifier.probabilities(images), atol=1e-5, rtol=1e-4)
    result = audit(generator, black_box, subspaces, semantics=semantics, joint=False, **OPTIONS)
    assert result.ranking()[0] == "left_colour" and result.settings["black_box"]
