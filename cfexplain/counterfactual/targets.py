"""Targets of a counterfactual search: what each face's decision should become, and the decision
gap that measures how far a decision is from it (``≥ 0`` once reached)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..classifiers import Classifier
from ..errors import InputError

__all__ = ["TargetSpec", "resolve_target", "decision_gap", "search_loss", "target_probability"]

_CLASS, _AWAY, _HEAD_ON, _HEAD_OFF = 0, 1, 2, 3
_MODE_NAMES = {_CLASS: "class", _AWAY: "away", _HEAD_ON: "head_on", _HEAD_OFF: "head_off"}


@dataclass(frozen=True)
class TargetSpec:
    """A resolved target, per face: the mode and the class or head index.

    ``mode``: ``"class"`` (reach class ``index``), ``"away"`` (leave class ``index``),
    ``"head_on"``/``"head_off"`` (push head ``index`` above/below the threshold).
    """

    mode: torch.Tensor  # (N,) int
    index: torch.Tensor  # (N,) int
    description: str


def resolve_target(classifier: Classifier, target: Any, original_logits: torch.Tensor) -> TargetSpec:
    """Turn a user target into per-face modes and indices.

    Softmax classifiers: ``"flip"`` (leave each face's current class), a class index or label.
    Sigmoid classifiers: ``(head, "on" | "off" | "flip")`` or a head alone (= ``"flip"``); with a
    single head, ``"flip"`` flips it.
    """
    n = original_logits.shape[0]
    device = original_logits.device
    full = lambda value: torch.full((n,), value, dtype=torch.long, device=device)
    if classifier.kind == "softmax":
        if isinstance(target, str) and target == "flip":
            return TargetSpec(full(_AWAY), original_logits.argmax(dim=1), "flip the decision")
        if isinstance(target, (tuple, list)):
            raise InputError(f"a softmax classifier takes 'flip', a class index or a label, got {target!r}")
        index = classifier.label_index(target)
        return TargetSpec(full(_CLASS), full(index), f"reach class {classifier.labels[index]!r}")
    head, direction = (target, "flip") if not isinstance(target, (tuple, list)) else tuple(target)
    if head == "flip" and len(classifier.labels) == 1:
        head = 0
    elif head == "flip":
        raise InputError(f"a sigmoid classifier with {len(classifier.labels)} heads needs one named: "
                         f"target=(head, 'on'|'off'|'flip') (on the command line --target head,flip), head one "
                         f"of {list(classifier.labels)}")
    index = classifier.label_index(head)
    if direction == "on":
        mode = full(_HEAD_ON)
    elif direction == "off":
        mode = full(_HEAD_OFF)
    elif direction == "flip":
        threshold = math.log(classifier.output.threshold / (1 - classifier.output.threshold))
        mode = torch.where(original_logits[:, index] > threshold, full(_HEAD_OFF), full(_HEAD_ON))
    else:
        raise InputError(f"a head direction is 'on', 'off' or 'flip', got {direction!r}")
    return TargetSpec(mode, full(index), f"head {classifier.labels[index]!r} {direction}")


def decision_gap(logits: torch.Tensor, mode: torch.Tensor, index: torch.Tensor, threshold_logit: float) -> torch.Tensor:
    """How far past the decision boundary each item is (positive: the target is reached).

    class: ``z_t − max_{j≠t} z_j``; away: ``max_{j≠c} z_j − z_c``; head on: ``z_h − τ``;
    head off: ``τ − z_h`` (τ the threshold's logit)."""
    chosen = logits.gather(1, index[:, None])[:, 0]
    if logits.shape[1] > 1:
        others = logits.scatter(1, index[:, None], float("-inf")).amax(dim=1)
    else:
        others = torch.zeros_like(chosen)
    gaps = torch.stack([chosen - others, others - chosen, chosen - threshold_logit, threshold_logit - chosen], dim=1)
    return gaps.gather(1, mode[:, None])[:, 0]


def target_probability(probabilities: torch.Tensor, mode: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The probability of the target per item (for "leave the class" / "head off": 1 − p)."""
    p = probabilities.gather(1, index[:, None])[:, 0]
    return torch.where((mode == _AWAY) | (mode == _HEAD_OFF), 1 - p, p)


def search_loss(logits, gap, mode, index, kind: str, margin: float, threshold_logit: float) -> torch.Tensor:
    """Per item, the loss an optimiser minimises: ``"margin"`` (hinge ``relu(margin − gap)``) or
    ``"ce"`` (cross-entropy towards the target, or a softplus for sigmoid heads)."""
    if kind == "margin":
        return F.relu(margin - gap)
    if kind != "ce":
        raise InputError(f"loss must be 'margin' or 'ce', got {kind!r}")
    log_p = logits.log_softmax(dim=1) if logits.shape[1] > 1 else None
    chosen = logits.gather(1, index[:, None])[:, 0]
    losses = []
    for m, row in zip(mode.tolist(), range(len(mode))):
        if m == _CLASS:
            losses.append(-log_p[row, index[row]])
        elif m == _AWAY:
            losses.append(-torch.log1p(-log_p[row, index[row]].exp().clamp(max=1 - 1e-6)))
        elif m == _HEAD_ON:
            losses.append(F.softplus(-(chosen[row] - threshold_logit)))
        else:
            losses.append(F.softplus(chosen[row] - threshold_logit))
    return torch.stack(losses)
