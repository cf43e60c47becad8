"""The classifier adapter: preprocessing, output kinds, loading, validation."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from cfexplain.classifiers import Classifier, OutputSpec, Preprocessing
from cfexplain.errors import CheckpointNotFoundError, InputError, ModelOutputError


class TinyNet(nn.Module):
    def __init__(self, outputs: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, outputs)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def images(n=2, size=16):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_preprocessing_steps():
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0] = 1.0  # pure red in [-1, 1]
    x[:, 2] = -1.0
    # mean/std are in the model's channel order (after the BGR flip): red is the last channel.
    pre = Preprocessing(size=4, value_range=(0, 255), mean=(0.0, 0.0, 100.0), std=(2.0,), channel_order="BGR")
    out = pre(x)
    assert out.shape == (1, 3, 4, 4)
    assert torch.allclose(out[:, 2], torch.full((1, 4, 4), (255 - 100) / 2))  # red moved to the last channel
    assert torch.allclose(out[:, 0], torch.full((1, 4, 4), 0.0))  # blue at -1 → 0
    cropped = Preprocessing(crop=(0.25, 0.5, 0.5, 0.5))(torch.arange(64.0).reshape(1, 1, 8, 8).expand(1, 3, 8, 8) / 63 * 2 - 1)
    assert cropped.shape == (1, 3, 4, 4)
    with pytest.raises(InputError, match="channel_order"):
        Preprocessing(channel_order="RBG")
    with pytest.raises(InputError, match="crop"):
        Preprocessing(crop=(0.5, 0.5, 0.9, 0.2))


def test_softmax_logits_and_probabilities():
    clf = Classifier(TinyNet(3), preprocessing=Preprocessing(size=8), output=OutputSpec.softmax(["a", "b", "c"]))
    logits = clf.logits(images())
    assert logits.shape == (2, 3)
    assert torch.allclose(clf.probabilities(images()).sum(1), torch.ones(2))
    assert clf.predict(images()).shape == (2,)
    assert clf.label_index("b") == 1 and clf.label_index(2) == 2
    with pytest.raises(InputError, match="out of range"):
        clf.label_index(3)
    with pytest.raises(InputError, match="unknown label"):
        clf.label_index("d")


def test_probability_outputs_become_logits():
    class SoftmaxNet(TinyNet):
        def forward(self, x):
            return super().forward(x).softmax(1)

    raw = Classifier(TinyNet(3), output=OutputSpec.softmax(["a", "b", "c"]))
    softmaxed = Classifier(SoftmaxNet(3), output=OutputSpec.softmax(["a", "b", "c"], scores="probabilities"))
    assert torch.allclose(raw.probabilities(images()), softmaxed.probabilities(images()), atol=1e-6)

    class SigmoidNet(TinyNet):
        def forward(self, x):
            return super().forward(x).sigmoid()

    logits = Classifier(TinyNet(3), output=OutputSpec.sigmoid(["x", "y", "z"]))
    probs = Classifier(SigmoidNet(3), output=OutputSpec.sigmoid(["x", "y", "z"], scores="probabilities"))
    assert torch.allclose(logits.logits(images()), probs.logits(images()), atol=1e-4)
    assert logits.predict(images()).dtype == torch.bool


def test_multi_head_outputs():
    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = TinyNet(4)

        def forward(self, x):
            z = self.body(x)
            return [z[:, 0:2], z[:, 2], z[:, 3:4]]  # a two-class head, a flat and a (N, 1) score

    clf = Classifier(Heads(), output=OutputSpec.heads(["smiling", "young", "pale"]))
    z = Heads.forward(clf.model, clf.preprocessing(images()))
    logits = clf.logits(images())
    assert logits.shape == (2, 3) and clf.kind == "sigmoid"
    assert torch.allclose(logits[:, 0], z[0][:, 1] - z[0][:, 0])
    assert torch.allclose(logits[:, 1], z[1]) and torch.allclose(logits[:, 2], z[2][:, 0])
    with pytest.raises(ModelOutputError, match="2 heads for 3|3 heads for 2"):
        Classifier(Heads(), output=OutputSpec.heads(["a", "b"])).logits(images())


def test_validation_errors():
    with pytest.raises(ModelOutputError, match=r"expected \(N, 2\)"):
        Classifier(TinyNet(3), output=OutputSpec.softmax(["a", "b"])).logits(images())

    class NaNNet(TinyNet):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(ModelOutputError, match="NaN"):
        Classifier(NaNNet(2), output=OutputSpec.softmax(["a", "b"])).logits(images())
    with pytest.raises(InputError, match="unique"):
        OutputSpec.softmax(["a", "a"])
    with pytest.raises(InputError, match="at least two"):
        OutputSpec.softmax(["a"])
    with pytest.raises(InputError):
        Classifier("not a model", output=OutputSpec.softmax(["a", "b"]))
    clf = Classifier(TinyNet(2), output=OutputSpec.softmax(["a", "b"]))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        clf.logits(torch.zeros(2, 1, 8, 8))


def test_gradients_reach_the_images_not_the_model():
    net = TinyNet(2)
    clf = Classifier(net, output=OutputSpec.softmax(["a", "b"]))
    x = images().requires_grad_(True)
    (grad,) = torch.autograd.grad(clf.logits(x)[:, 1].sum(), x)
    assert grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_torchscript_and_callable_loading(tmp_path, monkeypatch):
    net = TinyNet(2).eval()
    torch.jit.script(net).save(str(tmp_path / "model.pt"))
    spec = OutputSpec.softmax(["a", "b"])
    scripted = Classifier.from_torchscript(tmp_path / "model.pt", output=spec)
    assert torch.allclose(scripted.logits(images()), Classifier(net, output=spec).logits(images()), atol=1e-6)
    with pytest.raises(CheckpointNotFoundError):
        Classifier.from_torchscript(tmp_path / "missing.pt", output=spec)

    module = types.ModuleType("user_models")
    module.instance = net
    module.factory = lambda: TinyNet(2)
    module.function = lambda x: x.mean(dim=(2, 3))[:, :2]
    monkeypatch.setitem(sys.modules, "user_models", module)
    for attribute in ("instance", "factory", "function"):
        assert Classifier.from_callable(f"user_models:{attribute}", output=spec).logits(images()).shape == (2, 2)
    with pytest.raises(InputError, match="module:callable"):
        Classifier.from_callable("user_models", output=spec)
    with pytest.raises(InputError, match="cannot import"):
        Classifier.from_callable("no_such_module_xyz:f", output=spec)
    with pytest.raises(InputError, match="has no attribute"):
        Classifier.from_callable("user_models:nothing", output=spec)


def test_grouped_classes():
    clf = Classifier(TinyNet(4), output=OutputSpec.softmax(["a", "b", "c", "d"]))
    grouped = clf.grouped({"ab": ["a", "b"], "cd": [2, 3]})
    p, q = clf.probabilities(images()), grouped.probabilities(images())
    assert grouped.labels == ("ab", "cd")
    assert torch.allclose(q[:, 0], p[:, :2].sum(1), atol=1e-6) and torch.allclose(q[:, 1], p[:, 2:].sum(1), atol=1e-6)
    with pytest.raises(InputError, match="two groups"):
        clf.grouped({"a": ["a", "b"], "b": ["b"]})
    with pytest.raises(InputError, match="at least two"):
        clf.grouped({"all": ["a", "b", "c", "d"]})


def test_scores_inside_common_containers():
    from types import SimpleNamespace

    reference = Classifier(TinyNet(2), output=OutputSpec.softmax(["a", "b"])).logits(images())
    wrappers = {"tuple": lambda s: (s,), "dict": lambda s: {"logits": s, "hidden": s * 0},
                "output object": lambda s: SimpleNamespace(logits=s, loss=None)}
    for name, wrap in wrappers.items():
        class Wrapped(TinyNet):
            def forward(self, x):
                return wrap(super().forward(x))

        logits = Classifier(Wrapped(2), output=OutputSpec.softmax(["a", "b"])).logits(images())
        assert torch.equal(logits, reference), name

    class OneScore(TinyNet):  # a binary classifier returning (N,)
        def forward(self, x):
            return super().forward(x)[:, 0]

    single = Classifier(OneScore(2), output=OutputSpec.sigmoid(["smiling"])).logits(images())
    assert single.shape == (2, 1) and torch.equal(single[:, 0], reference[:, 0])

    class Pair(TinyNet):  # (scores, features): ambiguous, refused with what to do
        def forward(self, x):
            return super().forward(x), x

    with pytest.raises(ModelOutputError, match="a tuple of 2: wrap the model"):
        Classifier(Pair(2), output=OutputSpec.softmax(["a", "b"])).logits(images())
    with pytest.raises(ModelOutputError, match=r"expected \(N, 2\)"):  # (N,) only for one sigmoid head
        Classifier(OneScore(2), output=OutputSpec.softmax(["a", "b"])).logits(images())
