"""Defaults of the library that the command line's help quotes, kept in a module that imports
nothing heavy (so that ``cfexplain --help`` answers before torch loads); the functions take their
defaults from here."""

from __future__ import annotations

__all__ = ["INVERSION_STEPS", "LEARNING_FACES", "LEARNING_SEED"]

INVERSION_STEPS = 300
"""Adam steps per photo of :func:`cfexplain.photos.invert`."""
LEARNING_FACES = 16
"""Faces :func:`cfexplain.learn_subspaces` averages the metrics over."""
LEARNING_SEED = 0
"""Seed of those faces."""
