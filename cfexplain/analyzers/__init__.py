"""Face analyzers: parsers (per-pixel classes) and landmark detectors behind common interfaces."""

from .base import FaceParser, FaceParsing, LandmarkDetector
from .bisenet import CELEBAMASK_CLASSES, BiSeNet, BiSeNetParser
from .facemesh import FACEMESH_GROUPS, FACEMESH_OUTLINES, FaceMeshLandmarks
from .fan import FAN, IBUG68_GROUPS, FANLandmarks, local_soft_argmax
from .iris import IRIS_EYE_CORNERS, IRIS_GROUPS, IrisLandmarks
from .regions import FACEMESH_REGIONS, LandmarkRegionParser, Region, polygon_signed_distance

__all__ = [
    "BiSeNet",
    "BiSeNetParser",
    "CELEBAMASK_CLASSES",
    "FACEMESH_GROUPS",
    "FACEMESH_OUTLINES",
    "FACEMESH_REGIONS",
    "FAN",
    "FANLandmarks",
    "FaceMeshLandmarks",
    "FaceParser",
    "FaceParsing",
    "IBUG68_GROUPS",
    "IRIS_EYE_CORNERS",
    "IRIS_GROUPS",
    "IrisLandmarks",
    "LandmarkDetector",
    "LandmarkRegionParser",
    "Region",
    "local_soft_argmax",
    "polygon_signed_distance",
]
