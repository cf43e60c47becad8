"""cfexplain: counterfactual explanations of image classifiers in interpretable GAN subspaces.

The public API is flat: generators (:func:`load_generator`, :class:`StyleGAN2Generator`,
:class:`ModuleGenerator`), analyzers (:mod:`cfexplain.analyzers`), criteria
(:mod:`cfexplain.criteria`) and face presets (:mod:`cfexplain.presets`), subspace learning
(:class:`Semantic`, :func:`learn_subspaces`, :class:`SubspaceSet`), unsupervised directions
(:func:`discover_directions`, :class:`VoynovDiscovery`), counterfactuals and the audit (:class:`CounterfactualExplainer`,
:class:`SearchSettings`, :func:`audit`, :mod:`cfexplain.trust`), the classifier adapter
(:class:`Classifier`, :class:`Preprocessing`, :class:`OutputSpec`), real photos (:func:`align_faces`,
:func:`invert`, :func:`check_faithfulness`, :mod:`cfexplain.photos`), the offline models
(:mod:`cfexplain.zoo`), torch's CPU threads (:func:`set_threads`) and the exceptions
(:mod:`cfexplain.errors`).
"""

from . import analyzers, criteria, discovery, distributed, errors, photos, presets, threads, trust, zoo
from .audit import AuditResult, audit
from .photos import InversionResult, PhotoFaces, align_faces, check_faithfulness, invert
from .counterfactual import CounterfactualExplainer, CounterfactualResult, SearchSettings
from .discovery import VoynovDiscovery, discover_directions
from .analyzers import (
    BiSeNetParser,
    FaceMeshLandmarks,
    FaceParser,
    FaceParsing,
    FANLandmarks,
    LandmarkDetector,
    LandmarkRegionParser,
)
from .classifiers import Classifier, OutputSpec, Preprocessing
from .errors import (
    CfexplainError,
    CheckpointError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InputError,
    ModelFetchError,
    ModelOutputError,
    PhotoError,
    ShapeError,
    UnknownCheckpointFormatError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from .subspaces import (LowSpecificityWarning, Semantic, Subspace, SubspaceSet, learn_subspaces, measure_specificity,
                        subspace_agreement)
from .generators import (
    ChannelStyleGenerator,
    Generator,
    ModuleGenerator,
    StyleGAN2Config,
    StyleGAN2Generator,
    StyleLayer,
    StyleLayout,
    load_generator,
)

from ._version import __version__
from .threads import set_threads

__all__ = [
    "AuditResult",
    "BiSeNetParser",
    "CfexplainError",
    "ChannelStyleGenerator",
    "CheckpointError",
    "CheckpointNotFoundError",
    "Classifier",
    "CorruptCheckpointError",
    "CounterfactualExplainer",
    "CounterfactualResult",
    "FANLandmarks",
    "FaceMeshLandmarks",
    "FaceParser",
    "FaceParsing",
    "Generator",
    "InputError",
    "InversionResult",
    "LandmarkDetector",
    "LandmarkRegionParser",
    "LowSpecificityWarning",
    "ModelFetchError",
    "ModelOutputError",
    "ModuleGenerator",
    "OutputSpec",
    "PhotoError",
    "PhotoFaces",
    "Preprocessing",
    "SearchSettings",
    "Semantic",
    "ShapeError",
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "StyleLayer",
    "StyleLayout",
    "Subspace",
    "SubspaceSet",
    "UnknownCheckpointFormatError",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "VoynovDiscovery",
    "__version__",
    "align_faces",
    "analyzers",
    "audit",
    "check_faithfulness",
    "criteria",
    "discover_directions",
    "discovery",
    "distributed",
    "errors",
    "invert",
    "learn_subspaces",
    "load_generator",
    "measure_specificity",
    "photos",
    "presets",
    "set_threads",
    "subspace_agreement",
    "trust",
    "zoo",
]
