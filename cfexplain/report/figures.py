"""The pictures of a report: counterfactual strips, difference maps, subspace traversals."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from ..audit import AuditResult
from ..classifiers import Classifier
from ..generators.base import Generator
from ..imaging import to_uint8
from ..subspaces.core import SubspaceSet

__all__ = ["png_data_uri", "DIFFERENCE_FULL_SCALE", "difference_map", "difference_scale_bar", "telling_examples", "example_images", "edit_strip", "photo_panels",
           "traversal"]

STRIP_SCALES = (0.0, 1.0, 1.5, 2.0)
"""Where a counterfactual strip shows the face: the original, the decision boundary (the minimal
edit) and past it, as multiples of the minimal edit."""


def png_data_uri(image: np.ndarray | Image.Image, *, size: int | None = 160) -> str:
    """A ``data:image/png;base64,…`` URI of an ``(H, W, 3)`` uint8 image, enlarged to ``size``."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if size and picture.width < size:
        picture = picture.resize((size, size * picture.height // picture.width), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


DIFFERENCE_FULL_SCALE = 0.5
"""The mean change per colour channel that a difference map shows as white (a quarter of the
``[-1, 1]`` pixel range); every map of a report is on this one scale, so a small edit looks small."""


def _heat(change: torch.Tensor) -> np.ndarray:
    """uint8 RGB of ``change`` in ``[0, 1]``: black, through red and yellow, to white."""
    red = (change * 3).clamp(0, 1)
    green = (change * 3 - 1).clamp(0, 1)
    blue = (change * 3 - 2).clamp(0, 1)
    return (torch.stack([red, green, blue], dim=-1) * 255).round().to(torch.uint8).cpu().numpy()


def difference_map(before: torch.Tensor, after: torch.Tensor) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 heat maps of ``|after − before|`` (the mean over channels), on one
    fixed scale: black = unchanged, through red and yellow to white = :data:`DIFFERENCE_FULL_SCALE`
    or more (:func:`difference_scale_bar` is its legend)."""
    change = (after - before).abs().mean(dim=1) / DIFFERENCE_FULL_SCALE
    return _heat(change.clamp(0, 1))


def difference_scale_bar(width: int = 160, height: int = 10) -> np.ndarray:
    """``(height, width, 3)`` uint8: the difference maps' colours from no change (left) to
    :data:`DIFFERENCE_FULL_SCALE` (right)."""
    return _heat(torch.linspace(0, 1, width)[None].expand(height, width))


def telling_examples(audit: AuditResult, semantic: str, count: int) -> pd.DataFrame:
    """The most telling items of a semantic: the flipped faces with the smallest minimal edits
    (closest to the boundary along it), else the faces it moved furthest towards the target."""
    items = audit.counterfactuals.table
    rows = items[items["subspace"] == semantic]
    if "faithful" in rows and not audit.settings.get("include_unfaithful"):
        rows = rows[rows["faithful"].astype(bool)]  # unfaithful photos are shown, flagged, in the photo section
    flipped = rows[rows["flipped"]].sort_values("min_edit")
    if len(flipped):
        return flipped.head(count)
    return rows.sort_values("delta_prob", ascending=False).head(count)


def example_images(generator: Generator, audit: AuditResult, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Original, counterfactual (minimal edit if flipped, else the search's end) and difference
    images of the given items, as uint8 arrays."""
    result = audit.counterfactuals
    index = torch.tensor(rows.index.to_numpy(), dtype=torch.long)
    faces = torch.tensor(rows["face"].to_numpy(), dtype=torch.long)
    deltas = torch.where(torch.tensor(rows["flipped"].to_numpy(), dtype=torch.bool)[:, None],
                         result.deltas[index], result.end_deltas[index])
    shape = (-1, *result.latent_shape)
    with torch.no_grad():
        device = generator.device
        before = generator.synthesize(result.codes[faces].reshape(shape).to(device), space=result.space)
        after = generator.synthesize((result.codes[faces] + deltas).reshape(shape).to(device), space=result.space)
    return {"original": to_uint8(before), "counterfactual": to_uint8(after), "difference": difference_map(before, after)}


def edit_strip(generator: Generator, audit: AuditResult, row: pd.Series, classifier: Classifier | None,
               scales: tuple[float, ...] = STRIP_SCALES) -> list[tuple[float, np.ndarray, str]]:
    """One flipped item along its edit: for each of ``scales`` × the minimal edit, the image and
    how the classifier reads it (the most probable class and its probability; for sigmoid heads,
    the probability of the head the edit moves most), ``""`` without a classifier. At 0 and 1 the
    table's own probabilities are used when there is no classifier."""
    result = audit.counterfactuals
    code = result.codes[int(row["face"])]
    delta = result.deltas[int(row.name)]
    edited = torch.stack([code + t * delta for t in scales]).reshape(len(scales), *result.latent_shape)
    with torch.no_grad():
        images = generator.synthesize(edited.to(generator.device), space=result.space)
        labels = _readings(classifier, images) if classifier is not None else [
            f"target p = {row['p_before']:.2f}" if t == 0 else f"target p = {row['p_after']:.2f}" if t == 1 else ""
            for t in scales]
    return list(zip(scales, to_uint8(images), labels))


def _readings(classifier: Classifier, images: torch.Tensor) -> list[str]:
    """How the classifier reads each image of an edit strip (the first is the original)."""
    p = classifier.probabilities(images)
    if classifier.kind == "sigmoid":
        head = int((p - p[:1]).abs().amax(dim=0).argmax())
        return [f"p({classifier.labels[head]}) = {float(value):.2f}" for value in p[:, head]]
    best = p.argmax(dim=1)
    return [f"{classifier.labels[int(k)]} {float(p[i, k]):.2f}" for i, k in enumerate(best)]


def photo_panels(generator: Generator, audit: AuditResult) -> list[dict]:
    """Per photo of a photo audit: the aligned photo, its reconstruction, the counterfactual of
    the semantic that flips it with the smallest edit (else the reconstruction), the difference
    map (counterfactual against reconstruction), and that item's table row (``None`` when no
    semantic flipped it). Empty for audits of generated faces."""
    from ..counterfactual.baseline import BASELINE_NAME

    result = audit.counterfactuals
    if result.photos is None:
        return []
    items = result.table[result.table["subspace"] != BASELINE_NAME]
    panels = []
    for face in range(len(result.photos)):
        rows = items[(items["face"] == face) & items["flipped"]].sort_values("min_edit")
        row = rows.iloc[0] if len(rows) else None
        reconstruction = result.photos.reconstructions[face:face + 1]
        after = reconstruction
        if row is not None:
            code = result.codes[face] + result.deltas[int(rows.index[0])]
            with torch.no_grad():
                after = generator.synthesize(code.reshape(1, *result.latent_shape).to(generator.device),
                                             space=result.space).cpu()
        panels.append({"name": result.photos.names[face], "faithful": bool(result.photos.faithful[face]),
                       "psnr": float(result.photos.psnr[face]), "row": row,
                       "photo": to_uint8(result.photos.photos[face:face + 1])[0],
                       "reconstruction": to_uint8(reconstruction)[0], "counterfactual": to_uint8(after)[0],
                       "difference": difference_map(reconstruction, after)[0]})
    return panels


def traversal(generator: Generator, subspaces: SubspaceSet, name: str, codes: torch.Tensor, classifier: Classifier | None,
              steps: tuple[float, ...], spread: torch.Tensor) -> tuple[np.ndarray, list[float | None]]:
    """Images ``(len(steps), H, W, 3)`` of one face edited along the subspace's first direction by
    ``steps`` standard deviations, and the classifier's first-class probability for each (if given)."""
    subspace = subspaces[name]
    direction = (subspace.basis[:, 0] * spread[0]).to(device=codes.device, dtype=codes.dtype)
    flat = codes.reshape(1, -1)
    edited = torch.cat([flat + t * direction for t in steps]).reshape(len(steps), *subspace.latent_shape)
    with torch.no_grad():
        images = generator.synthesize(edited, space=subspace.space)
        probabilities = classifier.probabilities(images)[:, -1].tolist() if classifier is not None else [None] * len(steps)
    pictures = to_uint8(F.interpolate(images, size=images.shape[-2:], mode="nearest"))
    return pictures, probabilities
