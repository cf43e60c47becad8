"""The planted-shortcut check: a classifier trained on generated faces whose label secretly depends
on one measurement; an audit that explains must claim the matching semantic, and no other (and
nothing at all for a measurement no semantic targets).

* :func:`planted_dataset`: generated faces and any number of measurements of them (one analyzer
  pass), from :mod:`cfexplain.trust.measurements` or a region's redness;
* :func:`planted_shortcut_classifier`: a :class:`ShortcutCNN` trained on "is the score above the
  median?";
* :func:`planted_shortcut_check`: train one and audit it;
* :func:`planted_suite`: many measurements × seeds: correct claims, false claims, no evidence,
  cannot tell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..analyzers.base import FaceParser, LandmarkDetector
from ..audit import CANNOT_TELL, NO_EVIDENCE, audit
from ..classifiers import IDENTITY, Classifier, OutputSpec
from ..errors import InputError
from ..generators.base import Generator, make_rng
from ..subspaces.core import SubspaceSet
from .results import CORRECT_CLAIM, FALSE_CLAIM, PlantedCheck
from .measurements import NEGATIVE_CONTROLS, PLANTED_MEASUREMENTS, PlantedMeasurement, planted_measurement, region_redness

__all__ = ["ShortcutCNN", "matched_sample", "planted_dataset", "shortcut_dataset", "planted_shortcut_classifier",
           "planted_shortcut_check", "planted_suite"]


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


def _detector_of(parser: FaceParser, landmarks: LandmarkDetector | None) -> LandmarkDetector | None:
    if landmarks is not None:
        return landmarks
    return getattr(parser, "detector", None)  # a landmark-polygon parser carries its detector


def planted_dataset(generator: Generator, parser: FaceParser, n: int,
                    measurements: Sequence[str | PlantedMeasurement], *, landmarks: LandmarkDetector | None = None,
                    seed: int = 0, batch_size: int = 256) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` generated faces (drawn with ``seed``, on the CPU) and each measurement of them.

    Args:
        measurements: names of :data:`~cfexplain.trust.measurements.PLANTED_MEASUREMENTS` or
            :class:`PlantedMeasurement` objects.
        landmarks: the landmark detector for measurements that need one (default: the parser's
            own, for :func:`cfexplain.zoo.facemesh_parser`).

    Returns:
        ``(images (n, 3, H, W), {measurement name: scores (n,)})``.
    """
    chosen = [planted_measurement(m) for m in measurements]
    if not chosen:
        raise InputError("planted_dataset needs at least one measurement")
    detector = _detector_of(parser, landmarks)
    if any(m.needs_landmarks for m in chosen) and detector is None:
        raise InputError(f"measurements {[m.name for m in chosen if m.needs_landmarks]} need landmarks: pass landmarks=")
    rng = make_rng(seed)
    images, scores = [], {m.name: [] for m in chosen}
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x = generator.synthesize(generator.sample(min(batch_size, n - start), seed=rng))
            points = detector.landmarks(x) if detector is not None else None
            parse_landmarks = getattr(parser, "parse_landmarks", None)
            parsing = (parse_landmarks(points, x.shape[-2], x.shape[-1]) if points is not None and parse_landmarks
                       and getattr(parser, "detector", None) is detector else parser.parse(x))
            for m in chosen:
                scores[m.name].append(m.measure(x, parsing, points).cpu())
            images.append(x.cpu())
    return torch.cat(images), {name: torch.cat(values) for name, values in scores.items()}


def shortcut_dataset(generator: Generator, parser: FaceParser, n: int, *, region: str = "lips",
                     reference: str | None = "skin", measurement: str | PlantedMeasurement | None = None,
                     landmarks: LandmarkDetector | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated faces (on the CPU) and their planted score.

    With ``measurement``, the score is that measurement (:func:`planted_dataset`). Otherwise it is
    how much redder ``region`` is than ``reference`` (redness = R − (G + B)/2, averaged over the
    parser's hard masks), or, with ``reference=None``, the redness of ``region`` itself."""
    if measurement is not None:
        images, scores = planted_dataset(generator, parser, n, [measurement], landmarks=landmarks, seed=seed)
        return images, next(iter(scores.values()))
    rng = make_rng(seed)
    images, scores = [], []
    with torch.no_grad():
        for start in range(0, n, 256):
            x = generator.synthesize(generator.sample(min(256, n - start), seed=rng))
            parsing = parser.parse(x)
            score = region_redness(x, parsing, region)
            if reference is not None:
                score = score - region_redness(x, parsing, reference)
            images.append(x.cpu())
            scores.append(score.cpu())
    return torch.cat(images), torch.cat(scores)


def matched_sample(scores: torch.Tensor, confounders: torch.Tensor, n: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of up to ``n`` faces, half above and half below the median score, paired so that
    each pair is as alike as possible in ``confounders`` (standardised values; the globally
    closest pairs first, without replacement): in the sample the label "score above the median"
    carries (almost) no information about the confounders, so a classifier trained on it cannot
    use them as a proxy for the score. The pairs are returned shuffled (by ``seed``)."""
    if confounders.ndim != 2 or confounders.shape[0] != scores.shape[0]:
        raise InputError(f"confounders must be (faces, k) with {scores.shape[0]} faces, got {tuple(confounders.shape)}")
    above = scores > scores.median()
    values = confounders.double()
    values = (values - values.mean(dim=0)) / values.std(dim=0).clamp_min(1e-12)
    high, low = above.nonzero()[:, 0], (~above).nonzero()[:, 0]
    distance = torch.cdist(values[high], values[low])
    order = distance.flatten().argsort()  # globally closest pairs first
    used_high = torch.zeros(len(high), dtype=torch.bool)
    used_low = torch.zeros(len(low), dtype=torch.bool)
    pairs = []
    for flat in order.tolist():
        if 2 * len(pairs) + 2 > n:
            break
        row, column = divmod(flat, len(low))
        if used_high[row] or used_low[column]:
            continue
        used_high[row] = used_low[column] = True
        pairs.append((int(high[row]), int(low[column])))
        if len(pairs) == min(len(high), len(low)):
            break
    chosen = torch.tensor([i for pair in pairs for i in pair], dtype=torch.long)
    return chosen[torch.randperm(len(chosen), generator=make_rng(seed + 1))]


def _train(images: torch.Tensor, labels: torch.Tensor, split: int, *, epochs: int, batch_size: int, lr: float,
           weight_decay: float, seed: int) -> ShortcutCNN:
    """A :class:`ShortcutCNN` trained on the first ``split`` faces (AdamW, one-cycle learning rate)."""
    torch.manual_seed(seed)
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
    return model.eval()


def planted_shortcut_classifier(generator: Generator, parser: FaceParser, *, region: str = "lips",
                                reference: str | None = "skin", measurement: str | PlantedMeasurement | None = None,
                                landmarks: LandmarkDetector | None = None, n_train: int = 4000, epochs: int = 10,
                                batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.05, seed: int = 0,
                                data: tuple[torch.Tensor, torch.Tensor] | None = None,
                                confounders: torch.Tensor | None = None) -> tuple[Classifier, dict]:
    """A classifier that secretly decides by one measurement (or one region's colour).

    Faces get the label "is :func:`shortcut_dataset`'s score above the median?". A
    :class:`ShortcutCNN` is trained (AdamW, one-cycle learning rate) on 80 % of them.

    Args:
        measurement: a planted measurement (name or object); default: ``region``'s redness
            relative to ``reference``.
        data: ``(images, scores)`` to draw the ``n_train`` faces from (a random subset, by
            ``seed``); default: ``n_train`` new faces drawn with ``seed``.
        confounders: ``(faces, k)``, other measurements of the ``data`` faces: the training faces
            are then a :func:`matched_sample` (up to ``n_train``), so that the label carries no
            information about them and the classifier has only the planted measurement to go by.

    Returns:
        The classifier (labels ``("less", "more")``) and ``{"train_accuracy", "val_accuracy"}``.
    """
    if data is None:
        images, scores = shortcut_dataset(generator, parser, n_train, region=region, reference=reference,
                                          measurement=measurement, landmarks=landmarks, seed=seed)
    elif confounders is not None:
        chosen = matched_sample(data[1], confounders, n_train, seed=seed)
        images, scores = data[0][chosen], data[1][chosen]
    else:
        if len(data[0]) < n_train:
            raise InputError(f"the shortcut dataset has {len(data[0])} faces, fewer than n_train = {n_train}")
        chosen = torch.randperm(len(data[0]), generator=make_rng(seed))[:n_train]
        images, scores = data[0][chosen], data[1][chosen]
    n_train = len(images)
    split = int(0.8 * n_train)
    threshold = data[1].median() if confounders is not None else scores[:split].median()
    labels = (scores > threshold).long()
    model = _train(images, labels, split, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                   seed=seed)
    with torch.no_grad():
        predictions = torch.cat([model(images[i:i + 512]).argmax(dim=1) for i in range(0, n_train, 512)])
    accuracy = {"train_accuracy": float((predictions[:split] == labels[:split]).float().mean()),
                "val_accuracy": float((predictions[split:] == labels[split:]).float().mean())}
    what = planted_measurement(measurement).name if measurement is not None else f"{region} redness"
    classifier = Classifier(model.to(generator.device), preprocessing=IDENTITY, name=f"planted {what} shortcut",
                            output=OutputSpec.softmax(("less", "more")))
    return classifier, accuracy


def planted_shortcut_check(generator: Generator, parser: FaceParser, subspaces: SubspaceSet, *,
                           planted: str | None = None, region: str = "lips", reference: str | None = "skin",
                           measurement: str | PlantedMeasurement | None = None,
                           landmarks: LandmarkDetector | None = None, seed: int = 0, n: int = 24,
                           train_options: dict | None = None, data: tuple[torch.Tensor, torch.Tensor] | None = None,
                           confounders: torch.Tensor | None = None, **audit_options: Any) -> PlantedCheck:
    """Train a shortcut classifier and audit it: the audit should claim ``planted``, and nothing else.

    ``planted`` defaults to the measurement's semantic (``"lip_colour"`` for the default lips-
    redness score; ``None`` for a negative control of
    :data:`~cfexplain.trust.measurements.NEGATIVE_CONTROLS`, where any claim is false). The audit's
    faces are drawn with ``seed + 1000``.

    Returns:
        A :class:`PlantedCheck`: the audit's outcome (a correct claim, a false claim, no evidence
        or cannot tell), the semantics it claims, the planted semantic's verdict and rank, the
        audit table, the classifier's accuracy.
    """
    if planted is None:
        planted = planted_measurement(measurement).semantic if measurement is not None else "lip_colour"
    if planted is not None and planted not in subspaces:
        raise InputError(f"the subspace set has no {planted!r}; it has {list(subspaces)}")
    classifier, accuracy = planted_shortcut_classifier(generator, parser, region=region, reference=reference,
                                                       measurement=measurement, landmarks=landmarks, seed=seed,
                                                       data=data, confounders=confounders, **(train_options or {}))
    result = audit(generator, classifier, subspaces, n, seed=seed + 1000, progress=False, **audit_options)
    table = result.table.set_index("semantic")
    claimed = result.evidence
    undecided = bool(((table["verdict"] == CANNOT_TELL) & (table["p_value"] < result.settings["alpha"])).any())
    outcome = (FALSE_CLAIM if any(name != planted for name in claimed) else CORRECT_CLAIM if claimed
               else CANNOT_TELL if undecided else NO_EVIDENCE)
    return PlantedCheck(planted=planted, outcome=outcome, claimed=claimed,
                        verdict=None if planted is None else str(table.loc[planted, "verdict"]),
                        rank=None if planted is None else int(table.loc[planted, "rank"]), ranking=result.ranking(),
                        table=result.table, nothing_flipped=result.nothing_flipped, **accuracy)


def planted_suite(generator: Generator, parser: FaceParser, subspaces: SubspaceSet, *,
                  measurements: Sequence[str | PlantedMeasurement] | None = None, seeds: Sequence[int] = range(10),
                  pool: int = 8192, n: int = 32, landmarks: LandmarkDetector | None = None,
                  train_options: Mapping[str, Any] | None = None, matched: bool = True, progress: bool = True,
                  data: tuple[torch.Tensor, Mapping[str, torch.Tensor]] | None = None,
                  **audit_options: Any) -> pd.DataFrame:
    """The planted-shortcut check for several measurements and seeds.

    One pool of ``pool`` faces is generated and measured once (seed 12345); for every measurement
    and seed a :class:`ShortcutCNN` is trained on up to 4 000 of them (a third of the pool when
    matched; the seed picks the subset and the initialisation) and audited on ``n`` fresh faces.
    With ``matched`` (default), the training faces are a :func:`matched_sample` against the
    measurements of :data:`~cfexplain.trust.measurements.PLANTED_MEASUREMENTS` other than the
    planted one (always all of them, whichever are audited): lip redness and skin luminance, or jaw
    width and eye openness, correlate on generated faces, and without matching a classifier trained
    on one may decide by the other.

    Args:
        measurements: names or objects (default: every planted measurement and every negative
            control of :data:`~cfexplain.trust.measurements.NEGATIVE_CONTROLS`).
        data: the pool as :func:`planted_dataset` returns it (``pool`` faces drawn with seed
            12345, with every measurement needed), to reuse one generated and measured before.

    Returns:
        One row per measurement × seed: ``measurement, semantic, seed, outcome`` (``correct
        claim``, ``false claim``, ``no evidence``, ``cannot tell``), ``claimed`` (the semantics
        with evidence), ``verdict`` and ``rank`` (of the planted semantic), ``val_accuracy``,
        ``nothing_flipped``, ``ranking``.
    """
    chosen = [planted_measurement(m) for m in (measurements or [*PLANTED_MEASUREMENTS, *NEGATIVE_CONTROLS])]
    missing = sorted({m.semantic for m in chosen if m.semantic is not None} - set(subspaces))
    if missing:
        raise InputError(f"the subspace set lacks {missing}, the semantics of the planted measurements")
    measured = chosen + [m for m in PLANTED_MEASUREMENTS.values() if matched and m not in chosen]
    if data is None:
        data = planted_dataset(generator, parser, pool, measured, landmarks=landmarks, seed=12345)
    images, scores = data
    lacking = [m.name for m in measured if m.name not in scores]
    if lacking or len(images) != pool:
        raise InputError(f"the pool passed as data= has {len(images)} faces (pool = {pool}) and lacks the measurements "
                         f"{lacking}")
    options = {"n_train": min(4000, pool // 3 if matched else pool), **(train_options or {})}
    rows = []
    from tqdm.auto import tqdm

    with tqdm(total=len(chosen) * len(seeds), desc="planted shortcuts", disable=not progress) as bar:
        for m in chosen:
            others = (torch.stack([scores[o] for o in PLANTED_MEASUREMENTS if o != m.name], dim=1) if matched
                      else None)
            for seed in seeds:
                check = planted_shortcut_check(generator, parser, subspaces, planted=m.semantic, measurement=m, seed=seed,
                                               n=n, train_options=options, data=(images, scores[m.name]),
                                               confounders=others, **audit_options)
                rows.append({"measurement": m.name, "semantic": m.semantic, "seed": seed, "outcome": check.outcome,
                             "claimed": ", ".join(check.claimed), "verdict": check.verdict, "rank": check.rank,
                             "val_accuracy": check.val_accuracy, "nothing_flipped": check.nothing_flipped,
                             "ranking": ", ".join(check.ranking)})
                bar.update()
    return pd.DataFrame(rows)
