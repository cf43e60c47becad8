"""The settings of a counterfactual search, with their defaults, written once.

:class:`SearchSettings` is what :class:`~cfexplain.counterfactual.CounterfactualExplainer` takes as
keyword options, what :meth:`~cfexplain.counterfactual.CounterfactualExplainer.explain` overrides
for one call, what a result records, and where the command line reads its defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._options import setting
from .._validation import check_number, check_positive_int
from ..errors import InputError

__all__ = ["SearchSettings", "OPTIMIZERS", "LOSSES", "EDIT_UNITS", "DEFAULT_BUDGETS"]

EDIT_UNITS = ("image", "latent")
DEFAULT_BUDGETS = {"image": 0.2, "latent": 3.0}
"""The default edit budget per unit: an RMS image change of 0.2 (about what a random 3σ edit of
the zoo DCGAN's ``z`` does; two different faces differ by about 0.5), or 3 standard deviations."""

OPTIMIZERS = ("auto", "newton", "adam")
LOSSES = ("margin", "ce")


@dataclass(frozen=True)
class SearchSettings:
    """Options of the counterfactual search (see :class:`~cfexplain.counterfactual.CounterfactualExplainer`).

    ``budget`` and ``steps`` left at ``None`` resolve to the unit's and the optimiser's defaults
    (0.2 RMS image change or 3σ; 20 Newton or 100 Adam steps); ``optimizer="auto"`` resolves to
    Newton for the margin loss and Adam for cross-entropy. Every value is validated (finite,
    in range) on construction.
    """

    optimizer: str = setting("auto", "the search: newton (linearised-gap steps), adam, or auto (newton for the "
                                     "margin loss, adam for ce)", choices=OPTIMIZERS)
    loss: str = setting("margin", "the loss adam minimises: margin (hinge on the decision gap) or ce",
                        choices=LOSSES)
    margin: float = setting(0.5, "how far past the decision boundary the search aims, in logits")
    beta: float = setting(1e-3, "weight of the edit's squared size in adam's loss")
    unit: str = setting("image", "what an edit's size measures: image (RMS image change: semantics compared at "
                                 "equal image change) or latent (standard deviations)", choices=EDIT_UNITS)
    budget: float | None = setting(None, "largest edit, in the unit (default: 0.2 for image, 3 for latent)",
                                   type=float)
    steps: int | None = setting(None, "most steps per item (default: 20 newton, 100 adam)", type=int)
    lr: float = setting(0.1, "adam's learning rate")
    patience: int = setting(3, "newton steps without improvement before an item stops")
    batch_size: int = setting(64, "counterfactuals searched together: memory grows with it, and the finished "
                                  "batches are kept on an error")
    boundary_steps: int = setting(12, "most iterations of the minimal-edit root search per item")
    black_box: bool = setting(False, "search from classifier queries only, without gradients (finite-difference "
                                     "Newton steps in the subspace), even when the classifier has gradients; "
                                     "always for a classifier without them")
    max_queries: int = setting(200, "most classifier queries per counterfactual of a black-box search (its search "
                                    "and its minimal-edit root search)")
    scale_samples: int = setting(2000, "latent samples that measure the spread along each direction (latent unit)")
    image_samples: int = setting(16, "faces the image metric is averaged over (image unit)")
    seed: int = setting(0, "seed of the faces and of the edit units' estimates", cli=False)  # the command's --seed
    progress: bool = setting(True, "show progress", cli=False)  # the command's --quiet

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.unit not in EDIT_UNITS:
            raise InputError(f"unit must be one of {EDIT_UNITS}, got {self.unit!r}")
        if self.optimizer == "auto":
            object.__setattr__(self, "optimizer", "newton" if self.loss == "margin" else "adam")
        if self.budget is None:
            object.__setattr__(self, "budget", DEFAULT_BUDGETS[self.unit])
        if self.steps is None:
            object.__setattr__(self, "steps", 20 if self.optimizer == "newton" else 100)
        for name in ("budget", "margin", "lr"):
            check_number(name, getattr(self, name))
        check_number("beta", self.beta, zero=True)
        for name in ("steps", "patience", "batch_size", "boundary_steps", "scale_samples", "image_samples",
                     "max_queries"):
            check_positive_int(name, getattr(self, name))
        if not isinstance(self.black_box, bool):
            raise InputError(f"black_box must be True or False, got {self.black_box!r}")
        if self.black_box and self.optimizer != "newton":
            raise InputError("a black-box search takes Newton steps (optimizer='newton' or 'auto' with the margin "
                             "loss): Adam needs the gradient of its loss")
        if self.black_box and self.max_queries <= self.boundary_steps + 1:
            raise InputError(f"max_queries ({self.max_queries}) must exceed boundary_steps + 1 "
                             f"({self.boundary_steps + 1}): the root search holds back boundary_steps queries")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed must be an int, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """The resolved settings as a plain dict."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "SearchSettings":
        """These settings with some changed. Unknown names are refused. Changing the optimiser or
        the loss re-resolves the steps, changing the unit re-resolves the budget, unless given."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InputError(f"unknown option(s) {unknown}; the options are {sorted(known)}")
        base = self.to_dict()
        if ("optimizer" in changes or "loss" in changes) and "steps" not in changes:
            base["steps"], base["optimizer"] = None, changes.get("optimizer", "auto")
        if "unit" in changes and "budget" not in changes:
            base["budget"] = None
        return SearchSettings(**{**base, **changes})
