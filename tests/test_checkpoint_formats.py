"""Loaders on configurations other than the golden fixtures, and their errors on bad files."""

from __future__ import annotations

import argparse
import pickle

import pytest
import torch

import cfexplain
from cfexplain.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    ShapeError,
    UnknownCheckpointFormatError,
    UnsupportedModelError,
)
from cfexplain.generators import StyleGAN2Config, StyleGAN2Generator
from checkpoint_writers import (
    EasyDict,
    nvlabs_init_kwargs,
    rosinality_state,
    write_nvlabs_pickle,
    write_tf_pickle,
)
from conftest import fixture_path


def randomized(config: StyleGAN2Config, seed: int = 0) -> StyleGAN2Generator:
    """A generator with every tensor random (noise strengths and biases included)."""
    generator = StyleGAN2Generator(config, seed=seed)
    rng = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, tensor in generator.state_dict().items():
            if name.endswith(("noise_strength", ".bias", "w_avg")):
                tensor.copy_(0.2 * torch.randn(tensor.shape, generator=rng) + (1.0 if "affine" in name else 0.0))
    return generator


# A res64-like variant: 2-layer mapping, z = w = 48, narrower channels at 64 px, clamp in the kwargs.
VARIANT = StyleGAN2Config(resolution=64, channels={4: 32, 8: 32, 16: 32, 32: 32, 64: 16}, z_dim=48, w_dim=48,
                          mapping_layers=2, conv_clamp=256)


def assert_same_images(loaded: StyleGAN2Generator, source: StyleGAN2Generator) -> None:
    z = torch.randn(3, source.config.z_dim, generator=torch.Generator().manual_seed(5))
    ws = source.convert(z, "z", "w+")
    ws = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(6))  # per-slot codes
    with torch.no_grad():
        assert torch.allclose(loaded.convert(z, "z", "w"), source.convert(z, "z", "w"), atol=1e-5)
        for mode in ("const", "none"):
            assert torch.allclose(loaded.synthesize(ws, noise_mode=mode), source.synthesize(ws, noise_mode=mode), atol=1e-4)


def test_nvlabs_variant_with_ada_kwargs(tmp_path):
    source = randomized(VARIANT)
    kwargs = nvlabs_init_kwargs(source, channel_base=1024, channel_max=32, num_fp16_res=2, conv_clamp=256)
    loaded = cfexplain.load_generator(write_nvlabs_pickle(source, tmp_path / "g.pkl", init_kwargs=kwargs))
    assert loaded.config == source.config
    assert loaded.config.conv_clamp == 256
    assert_same_images(loaded, source)


def test_nvlabs_stylegan3_repo_flattened_kwargs(tmp_path):
    source = randomized(VARIANT)
    c = source.config
    kwargs = {"z_dim": c.z_dim, "c_dim": 0, "w_dim": c.w_dim, "img_resolution": 64, "img_channels": 3,
              "mapping_kwargs": EasyDict(num_layers=2), "channel_base": 1024, "channel_max": 32, "conv_clamp": 256}
    loaded = cfexplain.load_generator(write_nvlabs_pickle(source, tmp_path / "g.pkl", init_kwargs=kwargs, protocol=5))
    assert loaded.config.conv_clamp == 256
    assert_same_images(loaded, source)


@pytest.mark.parametrize("version, protocol", [(4, 4), (5, 3)])
def test_tensorflow_variants(tmp_path, version, protocol):
    source = randomized(VARIANT)
    kwargs = {"num_channels": 3, "resolution": 64, "label_size": 0, "fmap_base": 512, "fmap_max": 32,
              "latent_size": 48, "dlatent_size": 48, "mapping_layers": 2, "num_fp16_res": 2, "conv_clamp": 256}
    path = write_tf_pickle(source, tmp_path / "g.pkl", version=version, protocol=protocol, static_kwargs=kwargs)
    loaded = cfexplain.load_generator(path)
    assert loaded.config == source.config
    assert_same_images(loaded, source)


def test_rosinality_converted_file(tmp_path):
    source = randomized(VARIANT)
    path = tmp_path / "g.pt"
    torch.save({"g_ema": rosinality_state(source), "latent_avg": source.mapping.w_avg.clone()}, path)
    loaded = cfexplain.load_generator(path)
    assert_same_images(loaded, source)
    assert torch.equal(loaded.mapping.w_avg, source.mapping.w_avg)


def test_rosinality_training_checkpoint_estimates_w_avg(tmp_path):
    source = randomized(VARIANT)
    state = rosinality_state(source)
    args = argparse.Namespace(size=64, n_mlp=2, latent=48, channel_multiplier=2)
    path = tmp_path / "100000.pt"
    torch.save({"g": state, "d": {}, "g_ema": state, "g_optim": {}, "d_optim": {}, "args": args, "ada_aug_p": 0.1}, path)
    with pytest.warns(UserWarning, match="average w"):
        loaded = cfexplain.load_generator(path)
    with torch.no_grad():
        expected = source.mapping(torch.randn(10_000, 48, generator=torch.Generator().manual_seed(0))).mean(0)
    assert torch.allclose(loaded.mapping.w_avg, expected, atol=1e-5)
    assert "estimated" in loaded.provenance["w_avg"]


def test_data_parallel_prefix_and_plain_state_dicts(tmp_path):
    source = randomized(VARIANT)
    prefixed = {f"module.{k}": v for k, v in rosinality_state(source).items()}
    torch.save({"g_ema": prefixed, "latent_avg": source.mapping.w_avg}, tmp_path / "dp.pt")
    assert_same_images(cfexplain.load_generator(tmp_path / "dp.pt"), source)
    torch.save(source.state_dict(), tmp_path / "sd.pt")
    loaded = cfexplain.load_generator(tmp_path / "sd.pt")
    assert loaded.provenance["format"] == "state_dict"
    assert_same_images(loaded, source)


def test_legacy_torch_save_format(tmp_path):
    source = randomized(VARIANT)
    path = tmp_path / "legacy.pt"
    torch.save({"g_ema": rosinality_state(source), "latent_avg": source.mapping.w_avg}, path,
               _use_new_zipfile_serialization=False)
    assert_same_images(cfexplain.load_generator(path), source)


def test_device_argument(tmp_path):
    loaded = cfexplain.load_generator(fixture_path("stylegan2", "rosinality_res32.pt"), device="cpu")
    assert loaded.device.type == "cpu"
    assert not any(p.requires_grad for p in loaded.parameters())


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint file"):
        cfexplain.load_generator(tmp_path / "nope.pkl")
    with pytest.raises(FileNotFoundError):
        cfexplain.load_generator(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CorruptCheckpointError, match="empty"):
        cfexplain.load_generator(tmp_path / "empty.pkl")


@pytest.mark.parametrize("name", ["nvlabs_res32.pkl", "tf_res32.pkl", "rosinality_res32.pt"])
def test_truncated_file(tmp_path, name):
    data = fixture_path("stylegan2", name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError):
        cfexplain.load_generator(path)


def test_unknown_format(tmp_path):
    (tmp_path / "g.onnx").write_bytes(b"\x08\x07\x12\x04junk" * 10)
    with pytest.raises(UnknownCheckpointFormatError, match="not a checkpoint format"):
        cfexplain.load_generator(tmp_path / "g.onnx")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(UnknownCheckpointFormatError, match="not a StyleGAN2 checkpoint"):
        cfexplain.load_generator(tmp_path / "list.pkl")
    torch.save({"model": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(UnknownCheckpointFormatError, match="not a StyleGAN2 generator"):
        cfexplain.load_generator(tmp_path / "other.pt")


def test_stylegan3_is_refused_clearly(tmp_path):
    state = {"mapping.fc0.weight": torch.zeros(4, 4), "synthesis.input.freqs": torch.zeros(4, 2),
             "synthesis.L0_36_512.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "sg3.pt")
    with pytest.raises(UnsupportedModelError, match="StyleGAN3"):
        cfexplain.load_generator(tmp_path / "sg3.pt")


def test_conditional_generator_is_refused_clearly(tmp_path):
    source = randomized(VARIANT)
    kwargs = nvlabs_init_kwargs(source)
    kwargs["c_dim"] = 10
    with pytest.raises(UnsupportedModelError, match="conditional"):
        cfexplain.load_generator(write_nvlabs_pickle(source, tmp_path / "c.pkl", init_kwargs=kwargs))


def test_shape_mismatch_is_reported(tmp_path):
    state = randomized(VARIANT).state_dict()
    state["synthesis.b8.conv1.affine.weight"] = torch.zeros(31, 48)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ShapeError, match=r"synthesis\.b8\.conv1\.affine\.weight"):
        cfexplain.load_generator(tmp_path / "bad.pt")


def test_kwargs_contradicting_weights(tmp_path):
    source = randomized(VARIANT)
    kwargs = nvlabs_init_kwargs(source)
    kwargs["img_resolution"] = 128
    with pytest.raises(CorruptCheckpointError, match="resolution: file says 128, weights have 64"):
        cfexplain.load_generator(write_nvlabs_pickle(source, tmp_path / "k.pkl", init_kwargs=kwargs))


def test_missing_tensor_is_reported(tmp_path):
    state = randomized(VARIANT).state_dict()
    del state["synthesis.b16.conv1.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(CorruptCheckpointError, match=r"synthesis\.b16\.conv1\.weight"):
        cfexplain.load_generator(tmp_path / "missing.pt")


def test_the_training_generator_is_read_when_asked(tmp_path):
    """``network="training"`` reads ``G`` (NVlabs, TF) or ``g`` (rosinality) instead of the moving
    average; a file without it, a bare state dict and an unknown choice are refused by name."""
    from cfexplain._fingerprint import update_with_module
    from cfexplain.cli.config import make_generator
    from cfexplain.errors import InputError

    for name in ("nvlabs_res32.pkl", "tf_res32.pkl"):
        path = fixture_path("stylegan2", name)
        ema, training = cfexplain.load_generator(path), cfexplain.load_generator(path, network="training")
        assert ema.provenance["network"] == "ema" and training.provenance["network"] == "training"
        assert not torch.equal(ema.synthesis.b4.conv1.weight, training.synthesis.b4.conv1.weight)
        digests = []
        for generator in (ema, training):  # a run on one network never resumes a run on the other
            digest = __import__("hashlib").sha256()
            update_with_module(digest, generator)
            digests.append(digest.hexdigest())
        assert digests[0] != digests[1]
    source, other = randomized(VARIANT), randomized(VARIANT, seed=1)
    torch.save({"g": rosinality_state(other), "g_ema": rosinality_state(source), "latent_avg": source.mapping.w_avg},
               tmp_path / "both.pt")
    assert_same_images(cfexplain.load_generator(tmp_path / "both.pt", network="training"), other)
    with pytest.raises(InputError, match="no 'g'") as caught:
        cfexplain.load_generator(fixture_path("stylegan2", "rosinality_res32.pt"), network="training")
    assert "rosinality_res32.pt" in str(caught.value)
    torch.save(source.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(InputError, match="bare state dict"):
        cfexplain.load_generator(tmp_path / "sd.pt", network="training")
    with pytest.raises(InputError, match="network must be one of"):
        cfexplain.load_generator(tmp_path / "sd.pt", network="G")
    chosen = make_generator({"checkpoint": str(fixture_path("stylegan2", "nvlabs_res32.pkl")), "network": "training"})
    assert chosen.provenance["network"] == "training"
    with pytest.raises(InputError, match="zoo:dcgan has one"):
        make_generator({"checkpoint": "zoo:dcgan", "network": "training"})
