"""Behaviour of the Generator protocol, the StyleGAN2 network and the module wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cfexplain
from cfexplain.errors import InputError, ShapeError
from cfexplain.generators import ModuleGenerator, StyleGAN2Config, StyleGAN2Generator
from conftest import fixture_path


@pytest.fixture(scope="module")
def g32() -> StyleGAN2Generator:
    return cfexplain.load_generator(fixture_path("stylegan2", "nvlabs_res32.pkl"))


def test_latent_shapes_and_conversion_chain(g32):
    assert g32.spaces == ("z", "w", "w+", "s")
    assert [g32.latent_shape(s) for s in g32.spaces] == [(64,), (64,), (8, 64), (640,)]
    assert g32.latent_dim("w+") == 512
    z = g32.sample(3, space="z", seed=1)
    w = g32.convert(z, "z", "w")
    ws = g32.convert(w, "w", "w+")
    assert torch.equal(ws, w.unsqueeze(1).expand(-1, 8, -1))
    assert torch.equal(g32.convert(z, "z", "s"), g32.convert(ws, "w+", "s"))
    assert torch.equal(g32.convert(ws, "w+", "w+"), ws)
    with pytest.raises(InputError, match="cannot convert codes from 's' back to 'w'"):
        g32.convert(g32.convert(ws, "w+", "s"), "s", "w")


def test_all_spaces_give_the_same_image(g32):
    z = g32.sample(2, space="z", seed=4)
    with torch.no_grad():
        images = [g32.synthesize(g32.convert(z, "z", space), space=space) for space in g32.spaces]
    for image in images[1:]:
        assert torch.allclose(image, images[0], atol=1e-5)


def test_sample_is_seeded_and_truncated(g32):
    assert torch.equal(g32.sample(4, seed=7), g32.sample(4, seed=7))
    assert not torch.equal(g32.sample(4, seed=7), g32.sample(4, seed=8))
    w = g32.sample(4, space="w", seed=7)
    w_trunc = g32.sample(4, space="w", seed=7, truncation=0.5)
    assert torch.allclose(w_trunc, g32.mapping.w_avg + 0.5 * (w - g32.mapping.w_avg), atol=1e-6)
    assert g32.sample(2, space="w+", seed=0).shape == (2, 8, 64)
    rng = torch.Generator().manual_seed(3)
    assert torch.equal(g32.sample(2, seed=rng), g32.sample(2, seed=torch.Generator().manual_seed(3)))
    with pytest.raises(InputError, match="truncation applies when mapping z to w"):
        g32.sample(2, space="z", truncation=0.7)
    with pytest.raises(InputError, match="positive int"):
        g32.sample(0)
    with pytest.raises(InputError, match="unknown latent space 'q'"):
        g32.sample(2, space="q")


def test_code_validation(g32):
    with pytest.raises(ShapeError, match=r"must have shape \(N, 8, 64\), got \(2, 64\)"):
        g32.synthesize(torch.zeros(2, 64), space="w+")
    with pytest.raises(ShapeError, match=r"\(N, 640\)"):
        g32.synthesize(torch.zeros(2, 639), space="s")
    bad = torch.zeros(1, 64)
    bad[0, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        g32.synthesize(bad, space="z")
    with pytest.raises(InputError, match="floating-point"):
        g32.synthesize(torch.zeros(1, 64, dtype=torch.long), space="z")
    with pytest.raises(InputError, match="torch.Tensor"):
        g32.synthesize([[0.0] * 64], space="z")
    with pytest.raises(InputError, match="noise_mode"):
        g32.synthesize(torch.zeros(1, 64), space="z", noise_mode="fresh")


def test_noise_modes(g32):
    ws = g32.sample(2, space="w+", seed=0)
    with torch.no_grad():
        const = g32.synthesize(ws, noise_mode="const")
        none = g32.synthesize(ws, noise_mode="none")
        r1 = g32.synthesize(ws, noise_mode="random", noise_seed=1)
        r1_again = g32.synthesize(ws, noise_mode="random", noise_seed=1)
        r2 = g32.synthesize(ws, noise_mode="random", noise_seed=2)
    assert torch.equal(r1, r1_again)
    assert not torch.allclose(r1, r2)
    assert not torch.allclose(const, none) and not torch.allclose(const, r1)


def test_early_exit_equals_a_smaller_generator(g32):
    """Stopping at 16² returns exactly what a 16² generator with the same first blocks makes."""
    c = g32.config
    small = StyleGAN2Generator(StyleGAN2Config(resolution=16, channels={r: c.channels[r] for r in (4, 8, 16)},
                                               z_dim=c.z_dim, w_dim=c.w_dim, mapping_layers=c.mapping_layers))
    state = g32.state_dict()
    small.load_state_dict({k: state[k] for k in small.state_dict()})
    ws = g32.sample(3, space="w+", seed=2)
    with torch.no_grad():
        early = g32.synthesize(ws, resolution=16)
        expected = small.synthesize(ws[:, : small.num_ws])
        early_s = g32.synthesize(g32.convert(ws, "w+", "s"), space="s", resolution=16)
    assert early.shape == (3, 3, 16, 16)
    assert torch.allclose(early, expected, atol=1e-6)
    assert torch.allclose(early_s, expected, atol=1e-6)
    assert torch.equal(g32.synthesize(ws, resolution=32), g32.synthesize(ws))
    with pytest.raises(InputError, match="block resolutions"):
        g32.synthesize(ws, resolution=24)


def test_images_are_differentiable_in_every_space(g32):
    for space in g32.spaces:
        codes = g32.sample(2, space=space, seed=0).requires_grad_(True)
        g32.synthesize(codes, space=space).square().mean().backward()
        assert codes.grad is not None and codes.grad.abs().sum() > 0
    assert all(p.grad is None for p in g32.parameters())


def test_style_layout_addressing(g32):
    layout = g32.style_layout
    assert len(layout) == 11 and layout.total == 640
    assert layout[6].name == "b16.conv1" and layout["b16.conv1"] is layout[6]
    assert layout.index(6, 5) == layout[6].offset + 5 == layout.index("b16.conv1", 5)
    assert layout.locate(layout.index(9, 31)) == (layout[9], 31)
    assert [e.is_torgb for e in layout].count(True) == 4
    styles = g32.sample(2, space="s", seed=0)
    parts = layout.split(styles)
    assert [p.shape[1] for p in parts] == [e.size for e in layout]
    assert torch.equal(parts[6], styles[:, layout[6].slice])
    with pytest.raises(InputError, match="has 32 channels"):
        layout.index(9, 32)
    with pytest.raises(InputError, match="no style layer named"):
        layout["b64.conv1"]
    with pytest.raises(InputError, match="outside"):
        layout.locate(640)


def test_editing_one_style_channel_changes_the_image(g32):
    s = g32.sample(1, space="s", seed=0)
    edited = s.clone()
    edited[0, g32.style_layout.index("b16.conv1", 3)] += 5.0
    with torch.no_grad():
        assert not torch.allclose(g32.synthesize(s, space="s"), g32.synthesize(edited, space="s"))


def test_conv_clamp_engages():
    config = StyleGAN2Config.from_channel_base(16, channel_base=128, channel_max=16, z_dim=8, w_dim=8, mapping_layers=1)
    loose = StyleGAN2Generator(config, seed=0)
    clamped = StyleGAN2Generator(StyleGAN2Config(**{**config.__dict__, "conv_clamp": 0.05}), seed=0)
    ws = loose.sample(2, space="w+", seed=0)
    with torch.no_grad():
        first_rgb = clamped.synthesize(ws, resolution=4)  # one ToRGB output, clamped
        image = clamped.synthesize(ws)  # a sum of clamped ToRGB outputs over the skip path
    assert first_rgb.abs().max() <= 0.05 * 1.0001
    assert not torch.allclose(image, loose.synthesize(ws))


def test_float64_and_device_follow_the_generator(g32):
    g64 = cfexplain.load_generator(fixture_path("stylegan2", "nvlabs_res32.pkl")).double()
    ws = g32.sample(2, space="w+", seed=0)
    with torch.no_grad():
        out64 = g64.synthesize(ws)
        out32 = g32.synthesize(ws)
    assert out64.dtype == torch.float64 and g64.sample(1).dtype == torch.float64
    assert torch.allclose(out64.float(), out32, atol=1e-4)


def test_config_validation():
    with pytest.raises(InputError, match="power of two"):
        StyleGAN2Config(resolution=48, channels={})
    with pytest.raises(InputError, match="no entry for block resolutions"):
        StyleGAN2Config(resolution=16, channels={4: 8, 8: 8})
    f = StyleGAN2Config.config_f(1024)
    assert f.num_ws == 18 and f.channels[1024] == 32 and f.channels[64] == 512
    assert StyleGAN2Generator(StyleGAN2Config.config_f(256), seed=0).latent_dim("s") == 8704


class TinyDCGAN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(10, 8, 4, 1, 0), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid())

    def forward(self, z):
        return self.net(z)


def test_module_generator_wraps_a_user_network():
    torch.manual_seed(0)
    G = ModuleGenerator(TinyDCGAN(), input_shape=(10, 1, 1), output_range=(0, 1))
    assert G.spaces == ("z",) and G.resolution == 8 and G.img_channels == 3
    assert not G.module.training
    z = G.sample(4, seed=0)
    assert z.shape == (4, 10)
    images = G.synthesize(z)
    assert images.shape == (4, 3, 8, 8) and images.min() >= -1 and images.max() <= 1
    expected = G.module(z.reshape(4, 10, 1, 1)) * 2 - 1
    assert torch.allclose(images, expected)
    assert torch.allclose(G.sample(4, seed=0, truncation=0.5), 0.5 * z)
    with pytest.raises(ShapeError, match=r"\(N, 10\)"):
        G.synthesize(torch.zeros(2, 11))
    with pytest.raises(InputError, match="full resolution"):
        G.synthesize(z, resolution=4)


def test_module_generator_rejects_non_image_modules():
    with pytest.raises(ShapeError, match="square images"):
        ModuleGenerator(nn.Linear(4, 6), input_shape=4)
    with pytest.raises(InputError, match="nn.Module"):
        ModuleGenerator(lambda z: z, input_shape=4)
    with pytest.raises(InputError, match="output_range"):
        ModuleGenerator(TinyDCGAN(), input_shape=(10, 1, 1), output_range=(1, 0))


def test_forward_and_reverse_mode_transforms_agree(g32):
    """torch.func jvp/vjp/vmap work through synthesis and agree (adjoint identity <u, Jt> = <Jᵀu, t>)."""
    from torch.func import jvp, vjp, vmap

    g64 = cfexplain.load_generator(fixture_path("stylegan2", "nvlabs_res32.pkl")).double()
    ws = g64.sample(1, space="w+", seed=0)

    def synth(codes):
        return g64.synthesize(codes, space="w+", resolution=16)

    tangent = torch.randn(ws.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, jt = jvp(synth, (ws,), (tangent,))
    _, pullback = vjp(synth, ws)
    u = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose((u * jt).sum(), (pullback(u)[0] * tangent).sum(), rtol=1e-10)
    step = 1e-7
    finite_difference = (synth(ws + step * tangent) - synth(ws - step * tangent)) / (2 * step)
    assert torch.allclose(jt, finite_difference, atol=1e-5)
    tangents = torch.stack([tangent, 2 * tangent])
    batched = vmap(lambda t: jvp(synth, (ws,), (t,))[1])(tangents)
    assert torch.allclose(batched[1], 2 * jt, atol=1e-10)


def test_returned_codes_are_writable(g32):
    ws = g32.sample(2, space="w+", seed=0)
    ws[:, 3] += 1.0  # an expanded view would make this write several slots at once
    assert not torch.equal(ws[:, 3], ws[:, 2])


def test_sampling_is_prefix_stable():
    """Face i depends only on (seed, i): the first k codes are the same for every n ≥ k, in any shape."""
    from cfexplain.generators.base import standard_normal

    for shape in ((100,), (12,), (512,), (7, 3)):
        many = standard_normal(97, shape, 5)
        for k in (1, 2, 3, 5, 8, 15, 16, 17, 40, 96):
            assert torch.equal(standard_normal(k, shape, 5), many[:k]), (shape, k)
    # where n · dim is a multiple of 16 the values are torch.randn's, so such draws keep their faces
    assert torch.equal(standard_normal(16, (100,), 0), torch.randn((16, 100), generator=torch.Generator().manual_seed(0)))
    generator = ModuleGenerator(nn.Sequential(nn.Linear(12, 3 * 4 * 4), nn.Unflatten(1, (3, 4, 4))), 12)
    assert torch.equal(generator.sample(3, seed=9), generator.sample(10, seed=9)[:3])  # 36 values, then 120


def test_sampling_shards_from_any_start(monkeypatch):
    """sample(n, start=a) is faces a … a+n−1 of the full draw, whatever the block boundaries, also
    when the skipped rows are drawn in several chunks."""
    import cfexplain.generators.base as base

    for shape in ((100,), (7, 3), (512,)):
        many = base.standard_normal(60, shape, 11)
        for start, count in ((0, 5), (1, 1), (3, 17), (16, 20), (29, 31), (59, 1)):
            assert torch.equal(base.standard_normal(count, shape, 11, start=start), many[start:start + count])
    monkeypatch.setattr(base, "_SKIP_CHUNK_BLOCKS", 3)  # skip in chunks of 48 values
    many = base.standard_normal(40, (13,), 2)
    assert torch.equal(base.standard_normal(9, (13,), 2, start=31), many[31:])
    generator = ModuleGenerator(nn.Sequential(nn.Linear(12, 3 * 4 * 4), nn.Unflatten(1, (3, 4, 4))), 12)
    assert torch.equal(generator.sample(4, seed=9, start=6), generator.sample(10, seed=9)[6:])
    with pytest.raises(InputError, match="start"):
        generator.sample(2, start=-1)


def test_mapped_codes_are_the_same_in_every_shard_and_prefix(g32):
    """StyleGAN2's w, w+ and s codes come out of the mapping network, whose output depends on its
    batch at rounding level; sampling converts fixed blocks of faces, so a face's code is
    bit-identical however the draw is cut (a 2e-6 difference changed a learned eye_shape
    subspace's eigenvalues by 2 % through the iris crop)."""
    for space, truncation in (("w", 1.0), ("w+", 0.7), ("s", 1.0)):
        full = g32.sample(40, space=space, seed=4, truncation=truncation)
        for start, count in ((0, 1), (0, 3), (2, 2), (5, 20), (16, 17), (39, 1)):
            shard = g32.sample(count, space=space, seed=4, truncation=truncation, start=start)
            assert torch.equal(shard, full[start:start + count]), (space, start, count)


def test_noise_is_an_argument_of_synthesis():
    """Per-image noise maps replace the constant noise for one call; nothing is left set on the
    network, and a generator without noise inputs refuses them."""
    generator = StyleGAN2Generator(StyleGAN2Config(resolution=16, channels={4: 8, 8: 8, 16: 8}, z_dim=8, w_dim=8,
                                                   mapping_layers=2), seed=0)
    for layer in generator.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(0.5)
    codes = generator.sample(2, space="w", seed=1)
    maps = generator.noise_maps()
    with torch.no_grad():
        constant = generator.synthesize(codes, space="w")
        same = generator.synthesize(codes, space="w", noise=[m[None, None].expand(2, 1, -1, -1) for m in maps])
        other = generator.synthesize(codes, space="w", noise=[torch.zeros(2, 1, *m.shape) for m in maps])
        again = generator.synthesize(codes, space="w")
    assert torch.allclose(same, constant, atol=1e-6) and not torch.allclose(other, constant, atol=1e-3)
    assert torch.equal(again, constant)
    with pytest.raises(InputError, match="noise inputs"):
        generator.synthesize(codes, space="w", noise=maps[:1])
