"""BiSeNet and FAN re-implementations reproduce the golden fixtures (../shared/fixtures/{bisenet,fan})."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cfexplain.analyzers import FAN, BiSeNet, BiSeNetParser, FANLandmarks
from conftest import fixture_path
from weight_rule import rule_state_dict


def check_rule(state: dict[str, torch.Tensor], weights_check: str) -> None:
    for key, total, total_abs, first in json.loads(fixture_path(*weights_check.split("/")).read_text()):
        tensor = state[key].double()
        assert tensor.sum().item() == pytest.approx(total, rel=1e-6, abs=1e-6), key
        assert tensor.abs().sum().item() == pytest.approx(total_abs, rel=1e-6, abs=1e-6), key
        assert tensor.flatten()[: len(first)].tolist() == pytest.approx(first, rel=1e-6, abs=1e-7), key


@pytest.fixture(scope="module")
def bisenet_state():
    state = rule_state_dict(fixture_path("bisenet", "keys_shapes.json"), gain=1.7)
    check_rule(state, "bisenet/weights_check.json")
    return state


@pytest.fixture(scope="module")
def fan_state():
    state = rule_state_dict(fixture_path("fan", "keys_shapes.json"), gain=1.0)
    check_rule(state, "fan/weights_check.json")
    return state


def test_bisenet_key_layout_matches_checkpoint(bisenet_state):
    assert list(BiSeNet().state_dict()) == list(bisenet_state)


def test_bisenet_reproduces_reference_heads(bisenet_state):
    network = BiSeNet()
    network.load_state_dict(bisenet_state)
    network.eval()
    expected = np.load(fixture_path("bisenet", "expected.npz"))
    with torch.no_grad():
        heads = network(torch.from_numpy(expected["input"]))
    for head, name in zip(heads, ("out", "out16", "out32")):
        reference = torch.from_numpy(expected[name])
        tolerance = 1e-4 * max(1.0, reference.std().item())
        assert (head - reference).abs().max().item() <= tolerance, name
    assert torch.equal(heads[0].argmax(1), torch.from_numpy(expected["out"]).argmax(1))


def test_bisenet_parser_from_checkpoint(tmp_path, bisenet_state):
    state = {k: v for k, v in bisenet_state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "79999_iter.pth")
    parser = BiSeNetParser.from_checkpoint(tmp_path / "79999_iter.pth", input_size=96)
    expected = np.load(fixture_path("bisenet", "expected.npz"))
    u8 = torch.from_numpy(expected["input_uint8"]).float()
    images = u8 / 255 * 2 - 1  # generator range; the parser maps back to [0, 1] and normalises
    parsing = parser.parse(images)
    assert parsing.logits.shape == (2, 19, 96, 96)
    assert torch.allclose(parsing.logits, torch.from_numpy(expected["out"]), atol=2.5e-4)
    assert parsing.class_names[17] == "hair"
    lips = parsing.mask("lips")
    assert torch.allclose(lips, parsing.mask("u_lip", "l_lip"))
    assert torch.allclose(parsing.probabilities().sum(1), torch.ones(2, 96, 96), atol=1e-5)


def test_fan_key_layout_matches_checkpoint(fan_state):
    assert list(FAN().state_dict()) == list(fan_state)


@pytest.fixture(scope="module")
def fan_outputs(fan_state):
    network = FAN()
    network.load_state_dict(fan_state)
    network.eval()
    expected = np.load(fixture_path("fan", "expected.npz"))
    x = torch.from_numpy(expected["input_uint8"]).float() / 255
    with torch.no_grad():
        outputs = network(x)
    return network, outputs, expected


def test_fan_reproduces_reference_heatmaps(fan_outputs):
    _, outputs, expected = fan_outputs
    for out, name in ((outputs[0], "heatmaps_module0"), (outputs[-1], "heatmaps")):
        reference = torch.from_numpy(expected[name])
        assert (out - reference).abs().max().item() <= 1e-4 * max(1.0, reference.std().item()), name


def test_fan_landmarks_from_checkpoint(tmp_path, fan_state, fan_outputs):
    _, outputs, expected = fan_outputs
    torch.save(fan_state, tmp_path / "2DFAN4.pth.tar")
    detector = FANLandmarks.from_checkpoint(tmp_path / "2DFAN4.pth.tar")
    images = torch.from_numpy(expected["input_uint8"]).float() / 255 * 2 - 1
    with torch.no_grad():
        heatmaps = detector.heatmaps(images)
        points = detector.landmarks(images)
    assert torch.allclose(heatmaps, outputs[-1], atol=3e-4)
    assert points.shape == (2, 68, 2)
    peaks = heatmaps.flatten(2).argmax(-1)
    peak_xy = torch.stack([peaks % 64, peaks // 64], dim=-1).float()
    assert ((points + 0.5) / 4 - 0.5 - peak_xy).abs().max() <= 3.5  # within the soft-argmax window


def test_fan_torchscript_archive(tmp_path):
    """face-alignment 1.3/1.4 ship TorchScript archives that return only the final heat maps."""

    class HeatmapNet(torch.nn.Module):  # the same contract as those archives, small
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 68, 5, stride=4, padding=2)

        def forward(self, x):
            return self.conv(x)

    network = HeatmapNet().eval()
    torch.jit.script(network).save(str(tmp_path / "2DFAN4-cd938726ad.zip"))
    loaded = FANLandmarks.from_checkpoint(tmp_path / "2DFAN4-cd938726ad.zip")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded.landmarks(images), FANLandmarks(network).landmarks(images), atol=1e-5)
