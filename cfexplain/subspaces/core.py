"""Semantics (what to learn) and subspaces (what was learned), with safe save/load."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._integrity import load_tensors, seal, verify
from .._io import atomic_write, read_versioned_json, reading_document
from .._torch_files import write_torch_file
from ..criteria.base import Criterion
from ..errors import InputError, ShapeError
from .solvers import SOLVERS

__all__ = ["Semantic", "Subspace", "SubspaceSet", "FORMAT_VERSION"]

FORMAT_VERSION = 2
"""Version of the saved subspace-set format."""


@dataclass
class Semantic:
    """One nameable semantic: a target criterion plus keep-invariant criteria.

    The learned subspace holds the directions that change ``target`` most while leaving each
    ``keep`` criterion (approximately) unchanged.

    Args:
        name: e.g. ``"lip_colour"``.
        target: the criterion the directions should change.
        keep: criteria that must stay invariant.
        target_ratio: keep directions whose target sensitivity exceeds this fraction of the largest.
        keep_ratios: per keep criterion, eigenvalues below this fraction of its largest eigenvalue
            count as its null space (one number for all, or one per keep criterion).
        solver: ``"projected"`` (ICE, default), ``"late"`` (project after the fact), ``"soft"``
            (generalized eigenproblem) or ``"contrast"`` (the most specific directions against
            random ones); see :mod:`cfexplain.subspaces.solvers`.
        max_directions: keep at most this many directions (``None``: as many as the thresholds
            allow). Subspaces of equal dimension compare fairly in an audit.
        origin: how to build the semantic again (JSON-able; set by the presets of
            :mod:`cfexplain.presets`: the preset, its analyzers' sources and its options). A
            subspace learned for it records it, so that a saved set can rebuild its semantics
            (:func:`cfexplain.presets.semantics_of`). ``None`` for a semantic built by hand.
    """

    name: str
    target: Criterion
    keep: Sequence[Criterion] = ()
    target_ratio: float = 1e-2
    keep_ratios: float | Sequence[float] = 1e-2
    solver: str = "projected"
    max_directions: int | None = None
    origin: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError("a semantic needs a non-empty name")
        if not isinstance(self.target, Criterion):
            raise InputError(f"semantic {self.name!r}: target must be a Criterion, got {type(self.target).__name__}")
        self.keep = tuple(self.keep)
        for criterion in self.keep:
            if not isinstance(criterion, Criterion):
                raise InputError(f"semantic {self.name!r}: keep criteria must be Criterion objects, got {type(criterion).__name__}")
        ratios = [self.keep_ratios] * len(self.keep) if isinstance(self.keep_ratios, (int, float)) else list(self.keep_ratios)
        if len(ratios) != len(self.keep):
            raise InputError(f"semantic {self.name!r}: {len(ratios)} keep ratios for {len(self.keep)} keep criteria")
        for ratio in [self.target_ratio, *ratios]:
            if not 0 < ratio < 1:
                raise InputError(f"semantic {self.name!r}: ratios must be in (0, 1), got {ratio}")
        self.keep_ratios = tuple(float(r) for r in ratios)
        if self.max_directions is not None and (isinstance(self.max_directions, bool) or not isinstance(self.max_directions, int)
                                                or self.max_directions < 1):
            raise InputError(f"semantic {self.name!r}: max_directions must be a positive int or None, got {self.max_directions!r}")
        if self.solver not in SOLVERS:
            raise InputError(f"semantic {self.name!r}: solver must be one of {list(SOLVERS)}, got {self.solver!r}")

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        """Target first, then the keep criteria."""
        return (self.target, *self.keep)

    def describe(self) -> dict[str, Any]:
        """JSON-able settings, for provenance."""
        return {"name": self.name, "target": self.target.describe(), "keep": [c.describe() for c in self.keep],
                "target_ratio": self.target_ratio, "keep_ratios": list(self.keep_ratios), "solver": self.solver,
                "max_directions": self.max_directions, "origin": None if self.origin is None else dict(self.origin)}


@dataclass
class Subspace:
    """A learned subspace of a latent space.

    Attributes:
        name: the semantic's name.
        basis: ``(D, k)`` orthonormal columns, in the flattened latent space ``space``.
        eigenvalues: ``(k,)`` the target criterion's sensitivity along each column (descending).
        space: the latent space (``"z"``, ``"w"``, ``"w+"``, ``"s"``).
        latent_shape: the shape of one code of that space (``D`` is its product).
        provenance: how it was learned (criteria, thresholds, samples, seed, versions…).
    """

    name: str
    basis: torch.Tensor
    eigenvalues: torch.Tensor
    space: str
    latent_shape: tuple[int, ...]
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.basis = torch.as_tensor(self.basis, dtype=torch.float32)
        self.eigenvalues = torch.as_tensor(self.eigenvalues, dtype=torch.float32)
        self.latent_shape = tuple(int(v) for v in self.latent_shape)
        if self.basis.ndim != 2 or self.basis.shape[0] != int(np.prod(self.latent_shape)):
            raise ShapeError(f"subspace {self.name!r}: basis must be (D, k) with D = {int(np.prod(self.latent_shape))}, "
                             f"got {tuple(self.basis.shape)}")
        if self.eigenvalues.shape != (self.basis.shape[1],):
            raise ShapeError(f"subspace {self.name!r}: {self.eigenvalues.shape[0]} eigenvalues for {self.basis.shape[1]} directions")
        if not bool(torch.isfinite(self.basis).all()) or not bool(torch.isfinite(self.eigenvalues).all()):
            raise InputError(f"subspace {self.name!r}: its basis or eigenvalues hold NaN or infinite values")

    @property
    def dim(self) -> int:
        """k, the number of directions."""
        return self.basis.shape[1]

    def edit(self, codes: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
        """``codes + basis · coefficients``: codes ``(N, *latent_shape)``, coefficients ``(N, k)``."""
        if coefficients.shape[-1] != self.dim:
            raise ShapeError(f"subspace {self.name!r} has {self.dim} directions, got coefficients {tuple(coefficients.shape)}")
        delta = coefficients @ self.basis.to(device=codes.device, dtype=codes.dtype).T
        return codes + delta.reshape(codes.shape)

    def project(self, deltas: torch.Tensor) -> torch.Tensor:
        """Coefficients ``(N, k)`` of latent edits ``(N, *latent_shape)`` in this subspace."""
        return deltas.reshape(deltas.shape[0], -1) @ self.basis.to(device=deltas.device, dtype=deltas.dtype)


class SubspaceSet(Mapping[str, Subspace]):
    """Named subspaces learned together (same generator and latent space).

    ``save(path)`` writes a folder with ``subspaces.json`` (names, space, eigenvalues,
    provenance) and ``bases.pt`` (tensors only); ``SubspaceSet.load(path)`` reads it back with
    ``torch.load(weights_only=True)``: loading a subspace set cannot run code.
    """

    def __init__(self, subspaces: Sequence[Subspace] = (), *, provenance: Mapping[str, Any] | None = None) -> None:
        self._subspaces = {s.name: s for s in subspaces}
        if len(self._subspaces) != len(subspaces):
            raise InputError("subspace names must be unique")
        spaces = {(s.space, s.latent_shape) for s in subspaces}
        if len(spaces) > 1:
            raise InputError(f"all subspaces of a set must share a latent space, found {sorted(spaces)}")
        self.provenance: dict[str, Any] = dict(provenance or {})

    def __getitem__(self, name: str) -> Subspace:
        try:
            return self._subspaces[name]
        except KeyError:
            raise InputError(f"no subspace named {name!r}; the set has {list(self._subspaces)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._subspaces

    def __iter__(self) -> Iterator[str]:
        return iter(self._subspaces)

    def __len__(self) -> int:
        return len(self._subspaces)

    def __repr__(self) -> str:
        dims = ", ".join(f"{n}: {s.dim}" for n, s in self._subspaces.items())
        return f"SubspaceSet(space={self.space!r}, {{{dims}}})"

    @property
    def space(self) -> str | None:
        """The shared latent space (``None`` for an empty set)."""
        return next(iter(self._subspaces.values())).space if self._subspaces else None

    @property
    def latent_shape(self) -> tuple[int, ...] | None:
        """The latent shape of one code of the subspaces' space (``None`` for an empty set)."""
        return next(iter(self._subspaces.values())).latent_shape if self._subspaces else None

    def specificity_table(self) -> pd.DataFrame:
        """One row per subspace whose specificity was measured when it was learned
        (:mod:`cfexplain.subspaces.specificity`): ``semantic, directions, specificity, low, high``
        (the 90 % interval), ``target_gain`` and ``keep_gains`` (against random directions)."""
        rows = []
        for subspace in self._subspaces.values():
            measured = subspace.provenance.get("specificity")
            if measured:
                rows.append({"semantic": subspace.name, "directions": subspace.dim,
                             "specificity": measured["specificity"], "low": measured["interval"][0],
                             "high": measured["interval"][1], "target_gain": measured["target_gain"],
                             "keep_gains": ", ".join(f"{k} {v:.2f}" for k, v in measured["keep_gains"].items())})
        return pd.DataFrame(rows, columns=["semantic", "directions", "specificity", "low", "high", "target_gain",
                                           "keep_gains"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set to the folder ``path`` (created; replaced atomically file by file)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "provenance": self.provenance,
            "subspaces": [{"name": s.name, "space": s.space, "latent_shape": list(s.latent_shape),
                           "eigenvalues": s.eigenvalues.tolist(), "provenance": s.provenance}
                          for s in self._subspaces.values()],
        }
        tensors = {s.name: s.basis.contiguous() for s in self._subspaces.values()}
        meta = seal(meta, tensors)
        write_torch_file(folder / "bases.pt", tensors)
        atomic_write(folder / "subspaces.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=1)))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SubspaceSet":
        """Read a set written by :meth:`save`."""
        folder = Path(path)
        meta_path, bases_path = folder / "subspaces.json", folder / "bases.pt"
        if not meta_path.is_file() or not bases_path.is_file():
            from ..errors import CheckpointNotFoundError

            raise CheckpointNotFoundError(f"{folder} is not a saved subspace set (needs subspaces.json and bases.pt)")
        meta = read_versioned_json(meta_path, FORMAT_VERSION, "subspace set")
        bases = load_tensors(bases_path, "subspace set")
        verify(meta, bases, meta_path, "subspace set")
        with reading_document(folder, "subspace set"):
            subspaces = [Subspace(name=m["name"], basis=bases[m["name"]], eigenvalues=m["eigenvalues"], space=m["space"],
                                  latent_shape=tuple(m["latent_shape"]), provenance=m.get("provenance", {}))
                         for m in meta["subspaces"]]
            return cls(subspaces, provenance=meta.get("provenance", {}))
