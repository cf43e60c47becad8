"""The audit's own settings, with their defaults, written once.

:class:`AuditSettings` holds what the audit does around the counterfactual search (the search's
options are :class:`~cfexplain.counterfactual.SearchSettings`): how many faces, its control, its
statistics and which stages run. Each field's metadata carries its help text, from which the
command line's flags and the configuration's keys are made (:func:`cfexplain._options.cli_fields`;
``n``, ``seed`` and ``include_unfaithful`` have flags of their own: ``--faces``, ``--seed``,
``--include-unfaithful``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .._options import setting
from .._validation import check_int, check_number, check_positive_int
from ..errors import InputError

__all__ = ["AUTO", "AUTO_FIRST_FACES", "AUTO_ROUND_FACES", "AuditSettings", "auto_rounds"]

AUTO = "auto"
"""``faces="auto"``: add faces in rounds until every verdict is decided (``max_faces`` at most)."""
AUTO_FIRST_FACES, AUTO_ROUND_FACES = 32, 16
"""A ``faces="auto"`` audit's first round and every later one (whole joint-search batches of 8)."""


def auto_rounds(max_faces: int) -> list[tuple[int, int]]:
    """The faces ``[start, stop)`` of each round of a ``faces="auto"`` audit up to ``max_faces``: the
    first :data:`AUTO_FIRST_FACES`, then :data:`AUTO_ROUND_FACES` more at a time."""
    stops = list(range(AUTO_FIRST_FACES, max_faces, AUTO_ROUND_FACES)) + [max_faces]
    return list(zip([0, *stops[:-1]], stops))


@dataclass(frozen=True)
class AuditSettings:
    """Settings of :func:`~cfexplain.audit.audit` beside the search's (all validated on construction).

    Attributes:
        n: the number of generated faces, or ``"auto"``: rounds of faces until every verdict is
            decided, at most ``max_faces`` (:func:`auto_rounds`; the verdicts then test at
            ``alpha`` divided by the number of possible rounds). Set from ``audit``'s ``faces``.
        max_faces: the most faces of a ``faces="auto"`` audit.
        seed: seed of the faces, of the random control and of the side effects' random edits.
        controls: random subspaces per dimension in the control (each searched on every face like
            a semantic); 0 runs no control, and then no verdicts.
        alpha: the significance level of the verdicts (family-wise, Holm's correction).
        joint: run the joint search over all subspaces; attribution: with Integrated Gradients.
        baseline: run the unconstrained latent-gradient control.
        group_weight: the joint search's group-lasso weight; joint_steps: its most Adam steps.
        ig_steps: Integrated-Gradients steps.
        include_unfaithful: photo audits: count photos whose reconstruction the classifier decides
            differently on in the table too.
    """

    n: int | str = setting(32, "number of generated faces, or 'auto'", cli=False)  # the command line's --faces
    max_faces: int = setting(128, "with --faces auto: the most faces")
    seed: int = setting(0, "seed of the faces, the random control and the side effects' random edits", cli=False)
    controls: int = setting(16, "random subspaces per dimension in the control (0: no control, no verdicts)")
    alpha: float = setting(0.05, "significance level of the verdicts (family-wise, Holm's correction)")
    joint: bool = setting(True, "run the joint search over all subspaces at once")
    attribution: bool = setting(True, "attribute the joint counterfactuals with Integrated Gradients")
    baseline: bool = setting(True, "run the unconstrained latent-gradient control")
    group_weight: float = setting(0.1, "group-lasso weight of the joint search")
    joint_steps: int = setting(100, "most Adam steps of the joint search")
    ig_steps: int = setting(32, "Integrated-Gradients steps")
    include_unfaithful: bool = setting(False, "photos: count unfaithful photos in the table too", cli=False)

    def __post_init__(self) -> None:
        if self.n != AUTO and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1):
            raise InputError(f"the number of faces must be positive (an int ≥ 1) or 'auto', got {self.n!r}")
        check_int("max_faces", self.max_faces, minimum=AUTO_FIRST_FACES)
        check_int("seed", self.seed)
        check_int("controls", self.controls, minimum=0)
        check_number("alpha", self.alpha, below=1.0)
        for name in ("joint", "attribution", "baseline", "include_unfaithful"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_number("group_weight", self.group_weight, zero=True)
        for name in ("joint_steps", "ig_steps"):
            check_positive_int(name, getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "AuditSettings":
        """These settings with some changed; unknown names are refused."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InputError(f"unknown audit setting(s) {unknown}; they are {sorted(known)}")
        return dataclasses.replace(self, **changes)
