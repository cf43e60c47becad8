"""The pipeline on the accelerator when there is one, on the CPU otherwise (never skipped): every
stage keeps its tensors on the device it was given."""

from __future__ import annotations

import torch

from cfexplain import CounterfactualExplainer, zoo
from cfexplain.photos import check_faithfulness, invert
from cfexplain.subspaces import Subspace, SubspaceSet

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_generate_analyse_explain_and_invert_on_the_device():
    generator = zoo.dcgan_faces(device=DEVICE)
    classifier = zoo.gender_classifier(device=DEVICE)
    facemesh = zoo.facemesh(device=DEVICE)
    codes = generator.sample(2, space="s", seed=0).to(DEVICE)
    with torch.no_grad():
        images = generator.synthesize(codes, space="s")
        points = facemesh.landmarks(images)
        probabilities = classifier.probabilities(images)
    assert images.device.type == points.device.type == probabilities.device.type == DEVICE.type
    assert torch.isfinite(points).all() and torch.allclose(probabilities.sum(1), torch.ones(2, device=DEVICE))

    dim = generator.latent_dim("s")
    basis = torch.linalg.qr(torch.randn(dim, 4, generator=torch.Generator().manual_seed(0)))[0]
    subspaces = SubspaceSet([Subspace("random", basis, torch.ones(4), "s", (dim,))])
    result = CounterfactualExplainer(generator, classifier, subspaces).explain(codes, baseline=True)
    assert len(result.table) == 4 and result.table["p_before"].between(0, 1).all()
    assert result.codes.device.type == "cpu"  # results are moved off the device to be saved

    inversion = invert(generator, images, space="s", steps=5, starts=2)
    assert inversion.codes.device.type == "cpu" and torch.isfinite(inversion.psnr).all()
    gate = check_faithfulness(classifier, inversion)
    assert gate.faithful.shape == (2,)


def test_stylegan3_reproduces_its_fixtures_on_the_device():
    """The alias-free network (T and R) on the device: the golden images within 1e-4, and
    gradients through the filtered layers. cuDNN's TF32 convolutions (torch's default on Ampere and
    later) round to about 1e-3, so the comparison turns them off."""
    import numpy as np

    import cfexplain
    from conftest import fixture_path

    for which in ("t", "r"):
        generator = cfexplain.load_generator(fixture_path("stylegan3", f"nvlabs_{which}_res32.pkl"), device=DEVICE)
        expected = np.load(fixture_path("stylegan3", f"expected_{which}_res32.npz"))
        ws = torch.from_numpy(expected["ws_mixed"]).to(DEVICE).requires_grad_(True)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            images = generator.synthesize(ws, space="w+")
        assert images.device.type == DEVICE.type
        torch.testing.assert_close(images.detach().cpu(), torch.from_numpy(expected["img_mixed"]), atol=1e-4, rtol=0)
        images.square().mean().backward()
        assert ws.grad is not None and bool(torch.isfinite(ws.grad).all()) and ws.grad.abs().sum() > 0
