"""cfexplain: counterfactual explanations of image classifiers in interpretable GAN subspaces."""

from . import errors
from .errors import (
    CfexplainError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InputError,
    ShapeError,
    UnknownCheckpointFormatError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from .generators import (
    Generator,
    ModuleGenerator,
    StyleGAN2Config,
    StyleGAN2Generator,
    StyleLayer,
    StyleLayout,
    load_generator,
)

__version__ = "0.1.0"

__all__ = [
    "CfexplainError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "Generator",
    "ModuleGenerator",
    "InputError",
    "ShapeError",
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "StyleLayer",
    "StyleLayout",
    "UnknownCheckpointFormatError",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "errors",
    "load_generator",
    "__version__",
]
