"""The face semantics of the ICE paper, for two analyzer stacks.

Each semantic is a target criterion plus keep-invariant criteria with thresholds:

=================  ==========================================  ==================================================
semantic           target                                      kept invariant
=================  ==========================================  ==================================================
face_boundary      jaw landmarks (absolute)                    other landmarks; blended pixels of the face
eye_shape          eye landmarks                               other landmarks; pixels of the face without the eyes
eye_photometry     pixels of the eyes (dilated)                pixels outside them
hair_photometry    pixels of the hair (dilated)                pixels outside it
lip_colour         pixels of the lips (slightly dilated)       pixels outside them; the mouth's shape (centred)
face_colour        mean colour of the skin                     everything but that mean colour
mouth_shape        mouth landmarks (centred)                   other landmarks (centred); blended pixels off the mouth
=================  ==========================================  ==================================================

:func:`bisenet_fan_semantics` follows the reference recipes (BiSeNet regions, FAN-68 landmarks,
ICE's working resolutions, morphology and thresholds, tuned for StyleGAN2 FFHQ in StyleSpace).
:func:`facemesh_semantics` expresses them with the FaceMesh landmarks and the landmark-polygon
parser of the offline zoo; where that stack cannot express a semantic, it says so below instead
of faking it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch

from .analyzers.base import FaceParser, LandmarkDetector
from .analyzers.facemesh import FaceMeshLandmarks
from .criteria import BlendedPixels, ColorResidual, Criterion, LandmarkShape, RegionColor, RegionPixels
from .errors import InputError
from .subspaces.core import Semantic, SubspaceSet

__all__ = ["SEMANTIC_NAMES", "PRESETS", "bisenet_fan_semantics", "description_criteria", "facemesh_semantics",
           "semantics_of"]

SEMANTIC_NAMES = ("face_boundary", "eye_shape", "eye_photometry", "hair_photometry", "lip_colour", "face_colour",
                  "mouth_shape")
"""The seven semantics of the reference paper, in its order."""

_BISENET_NOT_BACKGROUND = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r", "nose",
                           "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")


def _select(semantics: list[Semantic], names: Sequence[str] | None, available: Sequence[str]) -> list[Semantic]:
    if names is None:
        return semantics
    unknown = [n for n in names if n not in SEMANTIC_NAMES]
    if unknown:
        raise InputError(f"unknown semantics {unknown}; the presets are {list(SEMANTIC_NAMES)}")
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(f"this analyzer stack cannot express {missing} (see the preset's documentation)")
    by_name = {s.name: s for s in semantics}
    return [by_name[n] for n in names]


def bisenet_fan_semantics(parser: FaceParser, landmarks: LandmarkDetector, *,
                          names: Sequence[str] | None = None) -> list[Semantic]:
    """The seven ICE semantics with a BiSeNet parser (CelebAMask-HQ classes) and FAN-68 landmarks.

    Recipes (working resolution r, structuring element as a fraction of the image size, thresholds):

    * face_boundary: jaw (0–16) vs other landmarks (1e-2) and blended pixels of every non-background
      class, eroded 0.05, r = 64 (3e-3).
    * eye_shape: eyes (36–47) vs other landmarks (1e-2) and the pixels of skin, brows, ears,
      earring, nose, mouth, lips and hair, eroded 0.05, r = 64 (2e-3).
    * eye_photometry: eyes and glasses dilated 0.1 vs outside (1e-3), r = 48.
    * hair_photometry: hair dilated 0.2 vs outside (2e-3), r = 48.
    * lip_colour: lips dilated 0.01 vs outside (1e-4) and centred mouth landmarks (1e-3), r = 128.
    * face_colour: mean colour of skin, ears, nose and neck vs the residual (1e-3), r = 64.
    * mouth_shape: centred mouth landmarks (48–67) vs the other landmarks centred (1e-2) and blended
      pixels of everything but the mouth, dilated 0.05, r = 48 (1e-2); solved with the (corrected)
      late projection and a target ratio of 2e-2, as in the reference.

    Target ratio 1e-2 unless stated. ``names`` picks a subset.
    """
    everything = _BISENET_NOT_BACKGROUND
    semantic = partial(Semantic, origin=_origin("bisenet_fan", parser, landmarks, {}))
    semantics = [
        semantic("face_boundary", LandmarkShape(landmarks, "jaw"),
                 [LandmarkShape(landmarks, "jaw", complement=True),
                  BlendedPixels(landmarks, parser=parser, regions=everything, erosion=0.05, resolution=64)],
                 keep_ratios=[1e-2, 3e-3]),
        semantic("eye_shape", LandmarkShape(landmarks, "eyes"),
                 [LandmarkShape(landmarks, "eyes", complement=True),
                  RegionPixels(parser, ("skin", "l_brow", "r_brow", "l_ear", "r_ear", "ear_r", "nose", "mouth", "u_lip",
                                        "l_lip", "hair"), erosion=0.05, resolution=64)],
                 keep_ratios=[1e-2, 2e-3]),
        semantic("eye_photometry", RegionPixels(parser, ("l_eye", "r_eye", "eye_g"), dilation=0.1, resolution=48),
                 [RegionPixels(parser, ("l_eye", "r_eye", "eye_g"), inside=False, dilation=0.1, resolution=48)],
                 keep_ratios=1e-3),
        semantic("hair_photometry", RegionPixels(parser, "hair", dilation=0.2, resolution=48),
                 [RegionPixels(parser, "hair", inside=False, dilation=0.2, resolution=48)], keep_ratios=2e-3),
        semantic("lip_colour", RegionPixels(parser, "lips", dilation=0.01, resolution=128),
                 [RegionPixels(parser, "lips", inside=False, dilation=0.01, resolution=128),
                  LandmarkShape(landmarks, "mouth", centered=True)],
                 keep_ratios=[1e-4, 1e-3]),
        semantic("face_colour", RegionColor(parser, ("skin", "l_ear", "r_ear", "nose", "neck"), resolution=64),
                 [ColorResidual(parser, ("skin", "l_ear", "r_ear", "nose", "neck"), resolution=64)], keep_ratios=1e-3),
        semantic("mouth_shape", LandmarkShape(landmarks, "mouth", centered=True),
                 [LandmarkShape(landmarks, "mouth", centered=True, complement=True),
                  BlendedPixels(landmarks, parser=parser, regions=[c for c in everything if c != "mouth"],
                                dilation=0.05, resolution=48)],
                 target_ratio=2e-2, keep_ratios=[1e-2, 1e-2], solver="late"),
    ]
    return _select(semantics, names, SEMANTIC_NAMES)


FACEMESH_SEMANTIC_NAMES = tuple(n for n in SEMANTIC_NAMES if n != "hair_photometry")


def _eye_detector(landmarks: LandmarkDetector, eyes: LandmarkDetector | None) -> LandmarkDetector:
    """eye_shape's target detector for :func:`facemesh_semantics` (see there)."""
    if eyes is not None:
        return eyes
    if isinstance(landmarks, FaceMeshLandmarks):
        from .zoo import iris

        device = next(iter(landmarks.buffers()), torch.empty(0)).device
        return iris(device=device, facemesh_detector=landmarks)
    return landmarks


def facemesh_semantics(parser: FaceParser, landmarks: LandmarkDetector, *, names: Sequence[str] | None = None,
                       resolution: int = 64, directions: int | None = 8, solver: str = "contrast",
                       target_ratio: float = 1e-3, keep_ratio: float = 1e-2,
                       eyes: LandmarkDetector | None = None) -> list[Semantic]:
    """Six of the seven semantics with FaceMesh landmarks and the FaceMesh polygon parser
    (:func:`cfexplain.zoo.facemesh_parser`).

    ``eyes`` is the detector of eye_shape's target, the eyelid outlines (group ``"eyes"``). By
    default, when ``landmarks`` is FaceMesh, the MediaPipe iris model on it
    (:func:`cfexplain.zoo.iris`, from the same wheel): FaceMesh's own eyelid points barely move
    when a small face's eyes open (docs/benchmarks.md), the iris model's do. Otherwise
    ``landmarks`` itself.

    **Not expressible:** ``hair_photometry``. Face landmarks outline the face, not the hair, so no
    region of this stack is the hair (the outside of the face oval mixes hair, neck and
    background); asking for it raises an :class:`~cfexplain.errors.InputError`.

    Differences from the BiSeNet + FAN recipes, each forced by the stack or by measurement:

    * the face is the inside of the FaceMesh face oval (BiSeNet's non-background classes also
      include hair, neck and clothes), so face_boundary's blended pixels cover the face only;
    * skin is the face oval minus the features (forehead and cheeks; no ears or neck);
    * landmark groups: jaw = the lower face-oval contour from ear to ear; lips = the FaceMesh lip
      contours; eye_shape's target = the iris model's eyelids (above), its kept landmarks the
      FaceMesh points off the eyes;
    * face_colour also keeps the pixels outside the skin and the lips' mean colour (the residual
      alone leaves the lips, eyes and background free, and on the zoo DCGAN a "skin colour" edit
      then recolours the lips nearly as much as the skin);
    * solved with the ``"contrast"`` solver (the directions most specific against random ones; the
      ICE null-space solvers, on the zoo DCGAN, return directions no more specific than random:
      see docs/subspaces.md), each semantic with the same number of ``directions`` (8), so that
      an audit compares semantics at equal dimension as well as equal image change.

    Working resolutions are capped at ``resolution`` (the zoo generator makes 64² images).
    ``solver="projected"`` (with ``keep_ratio``, and ``target_ratio`` at least 0.1) gives the ICE
    construction; ``directions=None`` keeps as many directions as the thresholds allow.
    """
    r = resolution
    small = min(48, r)
    ratio = target_ratio if solver == "contrast" else max(target_ratio, 0.1)
    options = {"resolution": resolution, "directions": directions, "solver": solver, "target_ratio": target_ratio,
               "keep_ratio": keep_ratio}
    origin = _origin("facemesh", parser, landmarks, options, eyes=eyes)
    semantic = partial(Semantic, target_ratio=ratio, keep_ratios=keep_ratio, solver=solver, max_directions=directions,
                       origin=origin)
    eye_detector = _eye_detector(landmarks, eyes) if names is None or "eye_shape" in names else landmarks
    lip_shape = LandmarkShape(landmarks, "lips", centered=True)  # one criterion for two roles: estimated once
    semantics = [
        semantic("face_boundary", LandmarkShape(landmarks, "jaw"),
                 [LandmarkShape(landmarks, "jaw", complement=True),
                  BlendedPixels(landmarks, parser=parser, regions="face", erosion=0.05, resolution=r)]),
        semantic("eye_shape", LandmarkShape(eye_detector, "eyes", name=None if eye_detector is landmarks else "eyelids"),
                 [LandmarkShape(landmarks, "eyes", complement=True),
                  RegionPixels(parser, ("skin", "brows", "nose", "mouth", "lips"), erosion=0.05, resolution=r)]),
        semantic("eye_photometry", RegionPixels(parser, "eyes", dilation=0.1, resolution=small),
                 [RegionPixels(parser, "eyes", inside=False, dilation=0.1, resolution=small)]),
        semantic("lip_colour", RegionPixels(parser, "lips", dilation=0.01, resolution=r),
                 [RegionPixels(parser, "lips", inside=False, dilation=0.01, resolution=r),
                  lip_shape]),
        semantic("face_colour", RegionColor(parser, "skin", resolution=r),
                 [ColorResidual(parser, "skin", resolution=r), RegionPixels(parser, "skin", inside=False, resolution=r),
                  RegionColor(parser, "lips", resolution=r)]),
        semantic("mouth_shape", lip_shape,
                 [LandmarkShape(landmarks, "lips", centered=True, complement=True),
                  BlendedPixels(landmarks, parser=parser, regions=("skin", "brows", "eyes", "nose"), dilation=0.05,
                                resolution=small)],
                 **({} if solver == "contrast" else {"solver": "late"})),
    ]
    return _select(semantics, names, FACEMESH_SEMANTIC_NAMES)


def description_criteria(parser: FaceParser, landmarks: LandmarkDetector, *, resolution: int = 64) -> dict[str, Criterion]:
    """Named face criteria for describing latent directions
    (:func:`cfexplain.discovery.describe_directions`): lip colour, eye appearance, skin colour,
    face outline, eye shape, mouth shape, background, and hair where the parser has it."""
    mouth = "mouth" if "mouth" in landmarks.groups and "lips" not in landmarks.groups else "lips"
    background = "background" if "background" in parser.class_names else "outside_face"
    named: dict[str, Criterion] = {
        "lip colour": RegionPixels(parser, "lips", resolution=resolution),
        "eye appearance": RegionPixels(parser, "eyes", dilation=0.05, resolution=resolution),
        "skin colour": RegionColor(parser, "skin", resolution=resolution),
        "face outline": LandmarkShape(landmarks, "jaw"),
        "eye shape": LandmarkShape(landmarks, "eyes", centered=True),
        "mouth shape": LandmarkShape(landmarks, mouth, centered=True),
        "background": RegionPixels(parser, background, resolution=resolution),
    }
    if "hair" in parser.regions or "hair" in parser.class_names:
        named["hair"] = RegionPixels(parser, "hair", resolution=min(48, resolution))
    return named


PRESETS = {"facemesh": facemesh_semantics, "bisenet_fan": bisenet_fan_semantics}
"""The presets by the name their semantics record in :attr:`Semantic.origin`."""


def _origin(preset: str, parser: FaceParser, landmarks: LandmarkDetector, options: Mapping[str, Any], *,
            eyes: LandmarkDetector | None = None) -> dict[str, Any]:
    """What a preset's semantics record to be built again: the preset, its options and each
    analyzer's source (``None`` for an analyzer built by hand, which then cannot be rebuilt)."""
    analyzers = {"parser": parser.source, "landmarks": landmarks.source}
    if eyes is not None:
        analyzers["eyes"] = eyes.source
    return {"preset": preset, "options": dict(options),
            "analyzers": {role: None if source is None else dict(source) for role, source in analyzers.items()}}


def _analyzer(role: str, source: Mapping[str, Any] | None, device: torch.device | str, semantic: str):
    """The analyzer a source describes (the zoo's by name, or a checkpoint file)."""
    from . import zoo
    from .analyzers import BiSeNetParser, FANLandmarks

    if source is None:
        raise InputError(f"cannot rebuild semantic {semantic!r}: its {role} was built by hand, not loaded from the zoo "
                         f"or a checkpoint file; pass the semantics yourself (semantics=, or --stack on the command line)")
    if "zoo" in source:
        build = {"facemesh": zoo.facemesh, "facemesh_parser": zoo.facemesh_parser, "iris": zoo.iris}.get(source["zoo"])
        if build is None:
            raise InputError(f"cannot rebuild semantic {semantic!r}: unknown zoo {role} {source['zoo']!r}")
        return build(device=device, **{k: v for k, v in source.items() if k != "zoo"})
    if "bisenet" in source:
        return BiSeNetParser.from_checkpoint(source["bisenet"], device=device)
    if "fan" in source:
        return FANLandmarks.from_checkpoint(source["fan"], device=device)
    raise InputError(f"cannot rebuild semantic {semantic!r}: unknown {role} source {dict(source)}")


def semantics_of(subspaces: SubspaceSet, *, device: torch.device | str = "cpu") -> list[Semantic]:
    """The semantics a saved subspace set was learned from, rebuilt from what each subspace recorded
    (:attr:`Semantic.origin`: a preset, its options and its analyzers' sources), in the set's order.

    Raises:
        InputError: naming the subspace and why, where a semantic cannot be rebuilt (built by
            hand, an analyzer built by hand, or a set saved before semantics recorded their origin).
        CheckpointNotFoundError: where an analyzer's checkpoint file is no longer there.
    """
    built: dict[str, list[Semantic]] = {}
    found = []
    for name in subspaces:
        origin = subspaces[name].provenance.get("origin")
        if not origin:
            raise InputError(f"cannot rebuild semantic {name!r}: its subspace does not record how its semantic was "
                             "made (a semantic built by hand, or a set saved by an older version); pass the "
                             "semantics yourself (semantics=, or --stack on the command line)")
        key = json.dumps(origin, sort_keys=True)
        if key not in built:
            if origin.get("preset") not in PRESETS:
                raise InputError(f"cannot rebuild semantic {name!r}: unknown preset {origin.get('preset')!r}")
            analyzers = {role: _analyzer(role, source, device, name) for role, source in origin["analyzers"].items()}
            built[key] = PRESETS[origin["preset"]](analyzers.pop("parser"), analyzers.pop("landmarks"),
                                                   **analyzers, **origin.get("options", {}))
        by_name = {semantic.name: semantic for semantic in built[key]}
        if name not in by_name:
            raise InputError(f"cannot rebuild semantic {name!r}: the {origin['preset']} preset has no semantic of that name")
        found.append(by_name[name])
    return found
