"""The result of a counterfactual search: one row per face × subspace, with the codes and edits
to remake every image; saved as tensors plus JSON (nothing that can execute code)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._integrity import load_tensors, seal, verify
from .._io import atomic_write, read_versioned_json, reading_document
from .._torch_files import write_torch_file
from ..errors import InputError
from ..generators.base import Generator
from ..photos.faithfulness import PhotoFaces
from .baseline import BASELINE_NAME

__all__ = ["CounterfactualResult", "RESULT_FORMAT_VERSION", "attach_partial_result", "merge_item_tables"]

RESULT_FORMAT_VERSION = 2


@dataclass
class CounterfactualResult:
    """Counterfactuals of many faces in many subspaces (one *item* per face × subspace).

    Attributes:
        space, latent_shape: the latent space of the codes.
        codes: ``(N, D)`` the original faces' codes (flattened).
        subspaces: the subspace names, in item order per face.
        table: one row per item (see :meth:`to_dataframe` for the columns).
        deltas: ``(items, D)`` latent edit at the minimal counterfactual (zero where not flipped).
        end_deltas: ``(items, D)`` latent edit where the search stopped.
        coefficients: per item, the search's end coefficients, in the search's unit.
        target: what was asked for; settings: the search settings.
        photos: when the faces are photos (:mod:`cfexplain.photos`): the photos, their
            reconstructions and the faithfulness gate's verdict, one per face; the table then has
            a ``faithful`` column. ``None`` for generated faces.
    """

    space: str
    latent_shape: tuple[int, ...]
    codes: torch.Tensor
    subspaces: list[str]
    table: pd.DataFrame
    deltas: torch.Tensor
    end_deltas: torch.Tensor
    coefficients: list[list[float]]
    target: str
    settings: dict[str, Any]
    photos: PhotoFaces | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.photos is not None:
            if len(self.photos) != len(self.codes):
                raise InputError(f"{len(self.photos)} photos for {len(self.codes)} faces")
            if "faithful" not in self.table:
                self.table["faithful"] = self.photos.faithful.numpy()[self.table["face"].to_numpy()].astype(bool)

    def with_photos(self, photos: PhotoFaces) -> "CounterfactualResult":
        """This result with the photos its faces are the codes of (from
        :func:`~cfexplain.photos.photo_codes`): the table gains the ``faithful`` column."""
        return dataclasses.replace(self, table=self.table.copy(), photos=photos)

    def faces(self, faces: Sequence[int] | torch.Tensor) -> "CounterfactualResult":
        """The result restricted to the faces at indices ``faces`` (renumbered 0, 1, … in that order)."""
        faces = [int(f) for f in torch.as_tensor(faces, dtype=torch.long).tolist()]
        position = {face: i for i, face in enumerate(faces)}
        rows = [i for i, face in enumerate(self.table["face"].tolist()) if face in position]
        rows.sort(key=lambda i: (position[int(self.table["face"].iloc[i])], i))
        table = self.table.iloc[rows].reset_index(drop=True)
        table["face"] = [position[int(f)] for f in table["face"]]
        index = torch.tensor(rows, dtype=torch.long)
        return CounterfactualResult(self.space, self.latent_shape, self.codes[torch.tensor(faces, dtype=torch.long)],
                                    list(self.subspaces), table, self.deltas[index], self.end_deltas[index],
                                    [self.coefficients[i] for i in rows], self.target, dict(self.settings),
                                    photos=None if self.photos is None else self.photos.subset(torch.tensor(faces)))

    @classmethod
    def concatenate(cls, parts: Sequence["CounterfactualResult"]) -> "CounterfactualResult":
        """One result from the results of consecutive blocks of faces searched alike (the ranks'
        shares of a distributed audit): the faces are renumbered in order and the items ordered
        as one search over all the faces orders them (face by face, every subspace; then the
        latent-gradient items, face by face). Results of photos are not concatenated."""
        if not parts:
            raise InputError("no results to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if (part.space, tuple(part.latent_shape), part.subspaces, part.target, part.settings) != \
                    (first.space, tuple(first.latent_shape), first.subspaces, first.target, first.settings):
                raise InputError("only results of the same search (space, subspaces, target, settings) concatenate")
        if any(part.photos is not None for part in parts):
            raise InputError("results of photos do not concatenate")
        table, order = merge_item_tables([part.table for part in parts], [len(part.codes) for part in parts])
        index = torch.as_tensor(order, dtype=torch.long)
        coefficients = [c for part in parts for c in part.coefficients]
        return cls(first.space, first.latent_shape, torch.cat([part.codes for part in parts]), list(first.subspaces),
                   table, torch.cat([part.deltas for part in parts])[index],
                   torch.cat([part.end_deltas for part in parts])[index], [coefficients[i] for i in order],
                   first.target, dict(first.settings))

    def to_dataframe(self) -> pd.DataFrame:
        """One row per item: ``face, subspace, flipped, min_edit`` (standard deviations),
        ``min_edit_latent`` (L2 in the latent space), ``end_edit``, ``steps``, ``p_before``,
        ``p_after`` (target probability at the minimal counterfactual), ``p_end``, ``delta_prob``,
        ``pixel_l1``, ``pixel_l2`` (mean absolute / root mean square image change at the minimal
        counterfactual, image range [-1, 1]), ``sensitivity`` (``‖∇_α gap‖`` at the face: how far
        the decision gap moves per unit edit, to first order), ``other_heads_flipped`` (sigmoid
        classifiers). Edits (``min_edit``, ``end_edit``) are in the search's unit
        (``settings["unit"]``). For photos, ``photo`` (the photo's name) follows ``face``."""
        table = self.table.copy()
        if self.photos is not None:
            table.insert(1, "photo", [self.photos.names[face] for face in table["face"]])
        return table

    def codes_of(self, which: str = "minimal") -> torch.Tensor:
        """Counterfactual codes ``(items, *latent_shape)``: at the ``"minimal"`` edit or the search ``"end"``."""
        deltas = self.deltas if which == "minimal" else self.end_deltas
        faces = torch.tensor(self.table["face"].to_numpy(), dtype=torch.long)
        return (self.codes[faces] + deltas).reshape(-1, *self.latent_shape)

    def images(self, which: str = "minimal", *, generator: Generator | None = None, batch_size: int = 32) -> torch.Tensor:
        """Images ``(items, 3, H, W)`` of every item, on the CPU: the ``"original"`` faces (for
        photos: their reconstructions), the counterfactuals at the ``"minimal"`` edit, or at the
        search's ``"end"``, synthesised in batches with ``generator`` (the one searched with: a
        result is data and holds no model). ``"photo"``: the aligned photo of each item's face."""
        if which == "photo":
            if self.photos is None:
                raise InputError("this result's faces are generated, not photos: there is no 'photo' image")
            return self.photos.photos[torch.tensor(self.table["face"].to_numpy(), dtype=torch.long)]
        if which not in ("original", "minimal", "end"):
            raise InputError(f"which must be 'original', 'minimal', 'end' or 'photo', got {which!r}")
        if generator is None:
            raise InputError(f"the {which!r} images are drawn by the generator searched with: pass generator= (a result "
                             "holds no model)")
        faces = torch.tensor(self.table["face"].to_numpy(), dtype=torch.long)
        codes = self.codes[faces].reshape(-1, *self.latent_shape) if which == "original" else self.codes_of(which)
        with torch.no_grad():
            return torch.cat([generator.synthesize(part.to(generator.device), space=self.space).cpu()
                              for part in codes.split(batch_size)])

    def _document(self) -> dict[str, Any]:
        records = self.table.replace({np.nan: None}).to_dict(orient="records")
        return {"format_version": RESULT_FORMAT_VERSION, "space": self.space, "latent_shape": list(self.latent_shape),
                "target": self.target, "settings": self.settings, "subspaces": self.subspaces, "items": records,
                "coefficients": self.coefficients,
                "photos": None if self.photos is None else self.photos.to_document()}

    def _tensors(self) -> dict[str, torch.Tensor]:
        photos = {} if self.photos is None else self.photos.tensors()
        return {"codes": self.codes, "deltas": self.deltas, "end_deltas": self.end_deltas, **photos}

    def to_json(self) -> str:
        """The result as JSON (format version :data:`RESULT_FORMAT_VERSION`); tensors excluded, their
        sha256 in the ``integrity`` manifest."""
        return json.dumps(seal(self._document(), self._tensors()), indent=1)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``result.json`` and ``tensors.pt`` (tensors only) into the folder ``path``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = self._tensors()
        write_torch_file(folder / "tensors.pt", tensors)
        text = self.to_json()
        atomic_write(folder / "result.json", lambda tmp: tmp.write_text(text))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CounterfactualResult":
        """Read a result written by :meth:`save` (``torch.load(weights_only=True)``: no code runs)."""
        folder = Path(path)
        meta = read_versioned_json(folder / "result.json", RESULT_FORMAT_VERSION, "counterfactual result")
        tensors = load_tensors(folder / "tensors.pt", "counterfactual result")
        verify(meta, tensors, folder / "result.json", "counterfactual result")
        with reading_document(folder, "counterfactual result"):
            photos = PhotoFaces.from_saved(meta["photos"], tensors) if meta.get("photos") else None
            return cls(meta["space"], tuple(meta["latent_shape"]), tensors["codes"], meta["subspaces"],
                       pd.DataFrame(meta["items"]), tensors["deltas"], tensors["end_deltas"], meta["coefficients"],
                       meta["target"], meta["settings"], photos=photos)


def merge_item_tables(tables: Sequence[pd.DataFrame], faces: Sequence[int]) -> tuple[pd.DataFrame, np.ndarray]:
    """The item tables of searches over consecutive blocks of ``faces[k]`` faces as one table, in
    the order one search over all the faces has (face by face, every subspace; then the
    latent-gradient items, face by face), with the faces renumbered; and ``order``, the position
    of each merged row among the tables' rows concatenated."""
    offsets = np.cumsum([0, *faces])
    shifted = [table.assign(face=table["face"].to_numpy() + offset) for table, offset in zip(tables, offsets)]
    table = pd.concat(shifted, ignore_index=True)
    order = np.lexsort((np.arange(len(table)), table["face"].to_numpy(), (table["subspace"] == BASELINE_NAME).to_numpy()))
    return table.iloc[order].reset_index(drop=True), order


def attach_partial_result(error: BaseException, build: Callable[[], CounterfactualResult]) -> None:
    """Attach the work finished before ``error`` to it as ``error.partial_result`` (the result of
    ``build()``), without ever hiding ``error``: where the result cannot be built or attached, the
    exception goes on without it."""
    try:
        error.partial_result = build()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - the original error matters more than its partial result
        pass
