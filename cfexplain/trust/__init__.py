"""Trust checks: evidence that an audit measures the classifier, not the method's biases.

* :func:`planted_shortcut_check` / :func:`planted_suite`: train a small CNN on generated faces
  whose label secretly depends on one measurement (skin luminance, lip redness, eye openness …,
  :mod:`cfexplain.trust.measurements`); the audit must claim the matching semantic and no other,
  and nothing for a negative control (:data:`NEGATIVE_CONTROLS`);
* :func:`randomization_check`: re-initialise the classifier's weights; the audit's ranking (or its
  flip rates) must change (Adebayo et al.'s model-randomisation test for explanations);
* :func:`stability_check`: subspaces learned from disjoint face samples must agree.
"""

from .measurements import NEGATIVE_CONTROLS, PLANTED_MEASUREMENTS, PlantedMeasurement, planted_measurement, region_redness
from .planted import (ShortcutCNN, matched_sample, planted_dataset, planted_shortcut_check, planted_shortcut_classifier, planted_suite,
                      shortcut_dataset)
from .randomization import randomization_check, randomize_weights
from .results import CORRECT_CLAIM, FALSE_CLAIM, PlantedCheck, RandomizationCheck, StabilityCheck
from .stability import stability_check

__all__ = ["CORRECT_CLAIM", "FALSE_CLAIM", "NEGATIVE_CONTROLS", "PLANTED_MEASUREMENTS", "PlantedCheck", "PlantedMeasurement", "RandomizationCheck", "StabilityCheck", "ShortcutCNN", "matched_sample", "planted_dataset", "planted_measurement",
           "planted_shortcut_check", "planted_shortcut_classifier", "planted_suite", "randomization_check",
           "randomize_weights", "region_redness", "shortcut_dataset", "stability_check"]
