"""The faithfulness gate: does the classifier decide on a photo's reconstruction as on the photo?

A counterfactual of a photo is an edit of its *reconstruction*. If the classifier already decides
differently on the reconstruction than on the photo, the explanation is of another image: such
photos are flagged wherever they appear, and kept out of aggregate tables unless asked for.

:func:`check_faithfulness` runs the classifier on both and returns :class:`PhotoFaces`, the record
that :meth:`~cfexplain.CounterfactualExplainer.explain` and :func:`~cfexplain.audit` carry for
photos.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from ..classifiers import Classifier
from ..errors import InputError
from .inversion import InversionResult
from .._batching import in_fixed_batches

__all__ = ["PhotoFaces", "check_faithfulness"]


def _decisions(classifier: Classifier, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(N, K)`` and decisions: class indices ``(N,)`` (softmax) or head booleans ``(N, K)``."""
    with torch.no_grad():  # the classifier moves each batch to its own device
        probabilities = in_fixed_batches(lambda part: classifier.probabilities(part).cpu(), images, batch_size)
    if classifier.kind == "softmax":
        return probabilities, probabilities.argmax(dim=1)
    return probabilities, probabilities > classifier.output.threshold


@dataclass
class PhotoFaces:
    """Photos standing in for generated faces, with the gate's verdict on each.

    Attributes:
        names: one per photo.
        photos: ``(N, 3, R, R)`` the aligned photos; reconstructions: their inversions' images.
        psnr: ``(N,)`` of each reconstruction, in dB.
        photo_probabilities, reconstruction_probabilities: ``(N, K)`` the classifier's
            probabilities (softmax classes or sigmoid heads) on each.
        faithful: ``(N,)`` whether the decision (the class, or every head) is the same on both.
        labels: the classifier's labels; kind: ``"softmax"`` or ``"sigmoid"``.
        skipped: ``(photo, reason)`` of the photos left out before inversion (no usable face).
    """

    names: list[str]
    photos: torch.Tensor
    reconstructions: torch.Tensor
    psnr: torch.Tensor
    photo_probabilities: torch.Tensor
    reconstruction_probabilities: torch.Tensor
    faithful: torch.Tensor
    labels: tuple[str, ...]
    kind: str = "softmax"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    def _decision(self, probabilities: torch.Tensor) -> list[str]:
        if self.kind == "softmax":
            return [self.labels[i] for i in probabilities.argmax(1).tolist()]
        return ["+".join(label for label, on in zip(self.labels, row) if on) or "none"
                for row in (probabilities > 0.5).tolist()]

    def _index(self) -> torch.Tensor:
        if self.kind == "softmax":
            return self.photo_probabilities.argmax(1)
        return torch.zeros(len(self), dtype=torch.long)

    def table(self) -> pd.DataFrame:
        """One row per photo: ``photo``, ``psnr``, ``decision_photo``, ``decision_reconstruction``,
        ``p_photo_decision_on_photo`` and ``p_photo_decision_on_reconstruction`` (the probability of
        the photo's decision, its class or, for heads, the first head, on each), ``faithful`` (the
        same decision on both)."""
        index = self._index()
        return pd.DataFrame({
            "photo": self.names, "psnr": self.psnr.double().numpy(),
            "decision_photo": self._decision(self.photo_probabilities),
            "decision_reconstruction": self._decision(self.reconstruction_probabilities),
            "p_photo_decision_on_photo": self.photo_probabilities.gather(1, index[:, None])[:, 0].double().numpy(),
            "p_photo_decision_on_reconstruction":
                self.reconstruction_probabilities.gather(1, index[:, None])[:, 0].double().numpy(),
            "faithful": self.faithful.numpy().astype(bool),
        })

    @property
    def survival_rate(self) -> float:
        """The share of photos whose decision survives inversion."""
        return float(self.faithful.double().mean()) if len(self) else float("nan")

    def summary(self) -> str:
        """One line: how many decisions survive inversion, and the PSNR."""
        kept = int(self.faithful.sum())
        skipped = ("; skipped: " + ", ".join(f"{name} ({reason})" for name, reason in self.skipped)
                   if self.skipped else "")
        return (f"{kept}/{len(self)} photos keep their decision on the reconstruction "
                f"(PSNR median {float(self.psnr.double().median()):.1f} dB){skipped}")

    def subset(self, faces: torch.Tensor) -> "PhotoFaces":
        """The photos at indices ``faces``."""
        faces = torch.as_tensor(faces, dtype=torch.long)
        return PhotoFaces([self.names[i] for i in faces.tolist()], self.photos[faces], self.reconstructions[faces],
                          self.psnr[faces], self.photo_probabilities[faces], self.reconstruction_probabilities[faces],
                          self.faithful[faces], self.labels, self.kind)

    def to_document(self) -> dict[str, Any]:
        """JSON-able fields (the images go with :meth:`tensors`)."""
        return {"names": list(self.names), "labels": list(self.labels), "kind": self.kind,
                "skipped": [list(pair) for pair in self.skipped]}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors, keyed for a tensor file."""
        return {"photo_images": self.photos, "photo_reconstructions": self.reconstructions, "photo_psnr": self.psnr,
                "photo_probabilities": self.photo_probabilities,
                "photo_reconstruction_probabilities": self.reconstruction_probabilities,
                "photo_faithful": self.faithful}

    @classmethod
    def from_saved(cls, document: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> "PhotoFaces":
        """Rebuild from :meth:`to_document` and :meth:`tensors`."""
        return cls(list(document["names"]), tensors["photo_images"], tensors["photo_reconstructions"],
                   tensors["photo_psnr"], tensors["photo_probabilities"], tensors["photo_reconstruction_probabilities"],
                   tensors["photo_faithful"].bool(), tuple(document["labels"]), document["kind"],
                   [tuple(pair) for pair in document.get("skipped", [])])


def check_faithfulness(classifier: Classifier, inversion: InversionResult, *, batch_size: int = 32,
                       skipped: list[tuple[str, str]] | None = None) -> PhotoFaces:
    """Run ``classifier`` on each photo and on its reconstruction (:class:`PhotoFaces`);
    ``skipped``: the photos left out before inversion, to be listed with them."""
    if not isinstance(inversion, InversionResult):
        raise InputError(f"inversion must be an InversionResult (from cfexplain.invert), got {type(inversion).__name__}")
    photo_p, photo_d = _decisions(classifier, inversion.targets, batch_size)
    recon_p, recon_d = _decisions(classifier, inversion.reconstructions, batch_size)
    same = photo_d == recon_d
    faithful = same if same.ndim == 1 else same.all(dim=1)
    return PhotoFaces(list(inversion.names), inversion.targets, inversion.reconstructions, inversion.psnr,
                      photo_p, recon_p, faithful, tuple(classifier.labels), classifier.kind, list(skipped or []))
