"""Trust checks: evidence that an audit measures the classifier, not the method's biases.

* :func:`planted_shortcut_check`: train a small CNN on generated faces whose label secretly
  depends on one semantic (e.g. lip colour measured through the parser's regions); the audit must
  rank that semantic first.
* :func:`randomization_check`: re-initialise the classifier's weights; the audit's ranking (or its
  flip rates) must change (Adebayo et al.'s model-randomisation test for explanations).
* :func:`stability_check`: subspaces learned from disjoint face samples must agree.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .analyzers.base import FaceParser
from .audit import audit
from .classifiers import Classifier, OutputSpec, Preprocessing
from .errors import InputError
from .generators.base import Generator, make_rng
from .subspaces.compare import subspace_agreement
from .subspaces.core import Semantic, SubspaceSet
from .subspaces.learn import learn_subspaces

__all__ = ["ShortcutCNN", "shortcut_dataset", "planted_shortcut_classifier", "planted_shortcut_check", "randomize_weights",
           "randomization_check", "stability_check"]


class ShortcutCNN(nn.Module):
    """A small CNN for the planted-shortcut check: three conv blocks, then a linear read-out of an
    8 × 8 feature map (position-aware, so it can learn what a region of the face looks like)."""

    def __init__(self, width: int = 16, dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = [3, width, 2 * width, 4 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(8))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width * 64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _redness(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    red = images[:, 0] - (images[:, 1] + images[:, 2]) / 2
    area = mask[:, 0].sum(dim=(1, 2)).clamp_min(1.0)
    return (red * mask[:, 0]).sum(dim=(1, 2)) / area


def shortcut_dataset(generator: Generator, parser: FaceParser, n: int, *, region: str = "lips",
                     reference: str | None = "skin", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated faces (on the CPU) and their planted score: how much redder ``region`` is than
    ``reference`` (redness = R − (G + B)/2, averaged over the parser's hard masks), or, with
    ``reference=None``, the redness of ``region`` itself."""
    rng = make_rng(seed)
    images, scores = [], []
    with torch.no_grad():
        for start in range(0, n, 256):
            x = generator.synthesize(generator.sample(min(256, n - start), seed=rng))
            parsing = parser.parse(x)
            score = _redness(x, parsing.mask(region, soft=False))
            if reference is not None:
                score = score - _redness(x, parsing.mask(reference, soft=False))
            images.append(x.cpu())
            scores.append(score.cpu())
    return torch.cat(images), torch.cat(scores)


def planted_shortcut_classifier(generator: Generator, parser: FaceParser, *, region: str = "lips",
                                reference: str | None = "skin", n_train: int = 4000, epochs: int = 10, batch_size: int = 64,
                                lr: float = 3e-3, weight_decay: float = 0.05, seed: int = 0,
                                data: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[Classifier, dict]:
    """A classifier that secretly decides by one region's colour.

    Faces get the label "is :func:`shortcut_dataset`'s score above the median?". A
    :class:`ShortcutCNN` is trained (AdamW, one-cycle learning rate) on 80 % of them.

    Args:
        data: ``(images, scores)`` from :func:`shortcut_dataset` to draw the ``n_train`` faces from
            (a random subset, by ``seed``); default: ``n_train`` new faces drawn with ``seed``.

    Returns:
        The classifier (labels ``("less", "more")``) and ``{"train_accuracy", "val_accuracy"}``.
    """
    torch.manual_seed(seed)
    if data is None:
        images, scores = shortcut_dataset(generator, parser, n_train, region=region, reference=reference, seed=seed)
    else:
        if len(data[0]) < n_train:
            raise InputError(f"the shortcut dataset has {len(data[0])} faces, fewer than n_train = {n_train}")
        chosen = torch.randperm(len(data[0]), generator=make_rng(seed))[:n_train]
        images, scores = data[0][chosen], data[1][chosen]
    split = int(0.8 * n_train)
    labels = (scores > scores[:split].median()).long()
    model = ShortcutCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    batches = (split + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * batches)
    order_rng = make_rng(seed + 1)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(split, generator=order_rng)
        for start in range(0, split, batch_size):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(images[i:i + 512]).argmax(dim=1) for i in range(0, n_train, 512)])
    accuracy = {"train_accuracy": float((predictions[:split] == labels[:split]).float().mean()),
                "val_accuracy": float((predictions[split:] == labels[split:]).float().mean())}
    classifier = Classifier(model.to(generator.device), preprocessing=Preprocessing(), name=f"planted {region} shortcut",
                            output=OutputSpec.softmax(("less", "more")))
    return classifier, accuracy


def planted_shortcut_check(generator: Generator, parser: FaceParser, subspaces: SubspaceSet, *,
                           planted: str = "lip_colour", region: str = "lips", reference: str | None = "skin", seed: int = 0,
                           n: int = 24, train_options: dict | None = None, data: tuple[torch.Tensor, torch.Tensor] | None = None,
                           **audit_options: Any) -> dict:
    """Train a shortcut classifier on ``region``'s colour and audit it: ``planted`` should rank first.

    Returns:
        ``{"rank", "ranking", "passed", "val_accuracy", ...}``: the planted semantic's rank (1 = first).
    """
    if planted not in subspaces:
        raise InputError(f"the subspace set has no {planted!r}; it has {list(subspaces)}")
    classifier, accuracy = planted_shortcut_classifier(generator, parser, region=region, reference=reference, seed=seed,
                                                       data=data, **(train_options or {}))
    result = audit(generator, classifier, subspaces, n=n, seed=seed + 1000, progress=False, **audit_options)
    ranking = result.ranking()
    return {"rank": ranking.index(planted) + 1, "ranking": ranking, "passed": ranking[0] == planted,
            "table": result.table, **accuracy}


def randomize_weights(classifier: Classifier, *, seed: int = 0) -> Classifier:
    """A copy of ``classifier`` whose weights are re-drawn at random (each tensor with its own mean
    and standard deviation; BatchNorm running statistics are kept)."""
    clone = copy.deepcopy(classifier)
    rng = make_rng(seed)
    with torch.no_grad():
        for name, tensor in list(clone.named_parameters()) + list(clone.named_buffers()):
            if not tensor.is_floating_point() or "running_" in name or tensor.numel() < 2:
                continue
            noise = torch.randn(tensor.shape, generator=rng, dtype=torch.float64).to(tensor)
            tensor.copy_(tensor.mean() + tensor.std() * noise)
    clone.name = f"{classifier.name} (randomised weights)"
    return clone


def randomization_check(generator: Generator, classifier: Classifier, subspaces: SubspaceSet, *, n: int = 16,
                        seed: int = 0, **audit_options: Any) -> dict:
    """Audit the classifier and a copy with re-drawn weights; the explanation should change.

    Returns:
        ``{"changed", "rank_correlation", "flip_rate_change", "original", "randomized"}``:
        ``changed`` when the rankings differ or some semantic's flip rate moves by more than 0.2.
    """
    options = {"joint": False, "attribution": False, "random_baseline": False, "progress": False, **audit_options}
    original = audit(generator, classifier, subspaces, n=n, seed=seed, **options)
    randomized = audit(generator, randomize_weights(classifier, seed=seed), subspaces, n=n, seed=seed, **options)
    a, b = original.table.set_index("semantic"), randomized.table.set_index("semantic")
    names = list(a.index)
    ranks_a, ranks_b = a.loc[names, "rank"].to_numpy(float), b.loc[names, "rank"].to_numpy(float)
    correlation = float(np.corrcoef(ranks_a, ranks_b)[0, 1]) if len(names) > 2 else float("nan")
    change = float(np.abs(a.loc[names, "flip_rate"].to_numpy() - b.loc[names, "flip_rate"].to_numpy()).max())
    return {"changed": original.ranking() != randomized.ranking() or change > 0.2, "rank_correlation": correlation,
            "flip_rate_change": change, "original": original.ranking(), "randomized": randomized.ranking()}


def stability_check(generator: Generator, semantics: Sequence[Semantic], *, space: str, n_samples: int = 8,
                    seeds: tuple[int, int] = (0, 1), **learn_options: Any) -> dict[str, float]:
    """Learn the subspaces twice from disjoint face samples (different seeds) and compare:
    the mean squared cosine of the principal angles per semantic (1 = identical)."""
    first, second = (learn_subspaces(generator, semantics, space=space, n_samples=n_samples, seed=s, progress=False,
                                     **learn_options) for s in seeds)
    return {name: subspace_agreement(first[name].basis, second[name].basis) for name in first}
