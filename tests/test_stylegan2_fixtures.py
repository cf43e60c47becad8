"""Every checkpoint reader reproduces the golden StyleGAN2 fixtures (../shared/fixtures/stylegan2)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import cfexplain
from conftest import fixture_path

FILES = {"nvlabs": "nvlabs_res32.pkl", "rosinality": "rosinality_res32.pt", "tensorflow": "tf_res32.pkl"}
LATENT_TOL = 1e-5
IMAGE_TOL = 1e-4


@pytest.fixture(scope="module", params=list(FILES))
def loaded(request):
    path = fixture_path("stylegan2", FILES[request.param])
    return request.param, cfexplain.load_generator(path)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_format_detected_and_provenance(loaded):
    fmt, generator = loaded
    assert generator.provenance["format"] == fmt
    assert len(generator.provenance["sha256"]) == 64


def test_config_inferred_from_file(loaded):
    _, generator = loaded
    expected = json.loads(fixture_path("stylegan2", "configs.json").read_text())["res32"]
    config = generator.config
    assert config.resolution == expected["img_resolution"]
    assert (config.z_dim, config.w_dim) == (expected["z_dim"], expected["w_dim"])
    assert config.mapping_layers == expected["mapping_layers"]
    assert config.mapping_lr_multiplier == pytest.approx(expected["mapping_lr_multiplier"])
    assert {str(r): c for r, c in config.channels.items()} == expected["channels"]
    assert generator.num_ws == expected["num_ws"]
    assert generator.latent_dim("s") == expected["styles_total"]
    assert sum(p.numel() for p in generator.parameters()) == expected["G_ema_param_count"]


def test_mapping_and_truncation(loaded, sg2_expected):
    _, generator = loaded
    with torch.no_grad():
        assert max_diff(generator.convert(sg2_expected["z"], "z", "w"), sg2_expected["w"]) <= LATENT_TOL
        w_trunc = generator.convert(sg2_expected["z"], "z", "w", truncation=0.7)
        assert max_diff(w_trunc, sg2_expected["w_trunc"]) <= LATENT_TOL
        ws_trunc = generator.convert(sg2_expected["z"], "z", "w+", truncation=0.7)
        assert max_diff(ws_trunc, sg2_expected["ws_trunc"]) <= LATENT_TOL
    assert max_diff(generator.mapping.w_avg, sg2_expected["w_avg"]) == 0.0


@pytest.mark.parametrize(
    "codes, image, noise_mode",
    [("ws", "img", "const"), ("ws_trunc", "img_trunc", "const"), ("ws_mixed", "img_mixed", "const"),
     ("ws", "img_nonoise", "none")],
)
def test_images_from_wplus(loaded, sg2_expected, codes, image, noise_mode):
    _, generator = loaded
    with torch.no_grad():
        out = generator.synthesize(sg2_expected[codes], space="w+", noise_mode=noise_mode)
    assert max_diff(out, sg2_expected[image]) <= IMAGE_TOL


def test_images_from_z_match_wplus_path(loaded, sg2_expected):
    _, generator = loaded
    with torch.no_grad():
        out = generator.synthesize(sg2_expected["z"], space="z")
    assert max_diff(out, sg2_expected["img"]) <= IMAGE_TOL


def test_styles_and_synthesis_from_styles(loaded, sg2_expected):
    _, generator = loaded
    with torch.no_grad():
        assert max_diff(generator.convert(sg2_expected["ws"], "w+", "s"), sg2_expected["styles"]) <= LATENT_TOL
        assert max_diff(generator.convert(sg2_expected["ws_mixed"], "w+", "s"), sg2_expected["styles_mixed"]) <= LATENT_TOL
        perturbed = generator.synthesize(sg2_expected["styles"] + sg2_expected["styles_delta"], space="s")
    assert max_diff(perturbed, sg2_expected["img_styles_perturbed"]) <= IMAGE_TOL


def test_style_layout_matches_fixture(loaded, sg2_expected):
    _, generator = loaded
    layout = generator.style_layout
    assert [e.name for e in layout] == list(sg2_expected["styles_layout_name"])
    assert [e.ws_index for e in layout] == list(sg2_expected["styles_layout_ws_index"])
    assert [e.size for e in layout] == list(sg2_expected["styles_layout_size"])
    assert [e.offset for e in layout] == list(sg2_expected["styles_layout_offset"])
    as_json = json.loads(fixture_path("stylegan2", "styles_layout_res32.json").read_text())
    assert layout.total == as_json["total"]
    assert [(e["name"], e["ws_index"], e["size"], e["offset"]) for e in as_json["layers"]] == [
        (e.name, e.ws_index, e.size, e.offset) for e in layout
    ]


def test_uses_g_ema_not_training_generator(loaded, sg2_expected):
    _, generator = loaded
    with torch.no_grad():
        out = generator.synthesize(sg2_expected["ws"])
    assert max_diff(out, sg2_expected["img_G_training"]) > 0.5


def test_all_formats_give_the_same_tensors():
    generators = {fmt: cfexplain.load_generator(fixture_path("stylegan2", f)) for fmt, f in FILES.items()}
    reference = generators["nvlabs"].state_dict()
    for fmt in ("tensorflow", "rosinality"):
        state = generators[fmt].state_dict()
        assert list(state) == list(reference)
        for key, tensor in reference.items():
            assert torch.equal(state[key], tensor), f"{fmt}: {key} differs"
    configs = {fmt: g.config for fmt, g in generators.items()}
    assert configs["nvlabs"] == configs["tensorflow"] == configs["rosinality"]


def test_loading_needs_no_nvidia_modules():
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        sys.modules.pop(name, None)
    cfexplain.load_generator(fixture_path("stylegan2", FILES["nvlabs"]))
    cfexplain.load_generator(fixture_path("stylegan2", FILES["tensorflow"]))
    assert not any(name.split(".")[0] in ("torch_utils", "dnnlib") for name in sys.modules)


def test_single_image_inference_path_matches(loaded, sg2_expected):
    """One image without gradients folds the styles into the weights: same images."""
    _, generator = loaded
    for i in range(len(sg2_expected["ws"])):
        with torch.no_grad():
            out = generator.synthesize(sg2_expected["ws"][i : i + 1])
        assert max_diff(out, sg2_expected["img"][i : i + 1]) <= IMAGE_TOL
        codes = sg2_expected["ws"][i : i + 1].clone().requires_grad_(True)
        assert max_diff(generator.synthesize(codes).detach(), sg2_expected["img"][i : i + 1]) <= IMAGE_TOL
