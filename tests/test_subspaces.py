"""Subspace learning: solvers and Jacobian methods recover known subspaces; save/load; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cfexplain
from cfexplain.criteria import BlendedPixels, FunctionCriterion, LandmarkShape, RegionPixels
from cfexplain.errors import CheckpointNotFoundError, CorruptCheckpointError, InputError, ShapeError
from cfexplain.jacobian import LatentImages, directional_changes, estimate_metrics
from cfexplain.subspaces import (
    Semantic,
    Subspace,
    SubspaceSet,
    factor_from_matrix,
    learn_subspaces,
    solve_late_projected,
    solve_projected,
    solve_soft,
    subspace_agreement,
)
from synthetic import FixedRegionParser, RegionCentroids, region_generator


@pytest.fixture(scope="module")
def synthetic():
    generator, net = region_generator(dim=12, seed=0)
    parser = FixedRegionParser()
    left_in = RegionPixels(parser, "left", resolution=None)
    left_out = RegionPixels(parser, "left", inside=False, resolution=None)
    right_in = RegionPixels(parser, "right", resolution=None)
    right_out = RegionPixels(parser, "right", inside=False, resolution=None)
    return generator, net, {"left_in": left_in, "left_out": left_out, "right_in": right_in, "right_out": right_out}


def semantics(criteria, solver="projected"):
    return [Semantic("left_colour", criteria["left_in"], [criteria["left_out"]], keep_ratios=1e-6, target_ratio=1e-4, solver=solver),
            Semantic("right_colour", criteria["right_in"], [criteria["right_out"]], keep_ratios=1e-6, target_ratio=1e-4, solver=solver)]


# ------------------------------------------------------------------ solvers on matrices


def random_psd(dim, rank, rng):
    x = rng.normal(size=(rank, dim))
    return x.T @ x


def test_projected_solver_recovers_the_constrained_subspace():
    rng = np.random.default_rng(0)
    dim = 10
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    allowed, blocked = q[:, :3], q[:, 3:]
    keep = blocked @ np.diag(rng.uniform(1, 5, dim - 3)) @ blocked.T  # null space = allowed
    target = random_psd(dim, 6, rng)
    result = solve_projected(factor_from_matrix(target), [factor_from_matrix(keep)], target_ratio=1e-6, keep_ratios=[1e-6])
    assert result.basis.shape == (dim, 3)
    assert subspace_agreement(result.basis, allowed) > 0.9999
    assert np.allclose(result.basis.T @ result.basis, np.eye(3), atol=1e-10)
    assert np.all(np.diff(result.eigenvalues) <= 0)
    # Equivalent definition: the eigenvectors of Bᵀ M_t B, lifted.
    values = np.linalg.eigvalsh(allowed.T @ target @ allowed)[::-1]
    assert np.allclose(result.eigenvalues, values, rtol=1e-8)


def test_intersection_of_several_keep_criteria():
    rng = np.random.default_rng(1)
    dim = 8
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    keep_a = q[:, :3] @ q[:, :3].T * 4  # blocks directions 0-2
    keep_b = q[:, 3:5] @ q[:, 3:5].T * 0.5  # blocks 3-4 (other scale: thresholds are relative)
    target = np.eye(dim)
    result = solve_projected(factor_from_matrix(target), [factor_from_matrix(keep_a), factor_from_matrix(keep_b)],
                             target_ratio=0.5, keep_ratios=[1e-3, 1e-3])
    assert subspace_agreement(result.basis, q[:, 5:]) > 0.9999


def test_late_projection_projects_with_the_intersection_and_normalises():
    rng = np.random.default_rng(2)
    dim = 9
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    keep_a, keep_b = q[:, :2] @ q[:, :2].T, q[:, 2:4] @ q[:, 2:4].T
    target = random_psd(dim, 9, rng)
    result = solve_late_projected(factor_from_matrix(target), [factor_from_matrix(keep_a), factor_from_matrix(keep_b)],
                                  target_ratio=1e-8, keep_ratios=[1e-3, 1e-3])
    basis = result.basis
    assert np.allclose(basis.T @ basis, np.eye(basis.shape[1]), atol=1e-10)  # unit-norm, orthogonal columns
    assert np.abs(q[:, :4].T @ basis).max() < 1e-10  # inside both null spaces, not only the last one's


def test_soft_solver_trades_off():
    dim = 6
    keep = np.diag([10.0, 10.0, 10.0, 0, 0, 0])
    target = np.diag([5.0, 5.0, 5.0, 1.0, 0.5, 0.0])
    result = solve_soft(factor_from_matrix(target), [factor_from_matrix(keep)], target_ratio=0.3, epsilon=1e-3)
    assert subspace_agreement(result.basis, np.eye(dim)[:, 3:5]) > 0.999  # free directions win over blocked ones


def test_solver_input_errors():
    with pytest.raises(InputError, match="keep ratios"):
        solve_projected(np.eye(3), [np.eye(3)], target_ratio=0.1, keep_ratios=[])
    with pytest.raises(InputError, match="NaN"):
        solve_projected(np.full((2, 3), np.nan), [], target_ratio=0.1, keep_ratios=[])
    with pytest.raises(InputError, match="D = 3"):
        solve_projected(np.eye(3), [np.eye(4)], target_ratio=0.1, keep_ratios=[0.1])


# ------------------------------------------------------------------ ground truth through the whole pipeline


@pytest.mark.parametrize("solver", ["projected", "late", "soft"])
def test_every_solver_recovers_the_known_subspaces(synthetic, solver):
    generator, net, criteria = synthetic
    learned = learn_subspaces(generator, semantics(criteria, solver), space="z", n_samples=4, method="forward", progress=False)
    left, right = learned["left_colour"], learned["right_colour"]
    assert subspace_agreement(left.basis, net.true_subspace(slice(0, 3))) >= 0.99
    assert subspace_agreement(right.basis, net.true_subspace(slice(3, 6))) >= 0.99


@pytest.mark.parametrize("method", ["forward", "reverse", "randomized"])
def test_every_jacobian_method_agrees_with_the_exact_solution(synthetic, method):
    generator, net, criteria = synthetic
    learned = learn_subspaces(generator, semantics(criteria), space="z", n_samples=3, method=method, batch_size=2,
                              progress=False, block_size=4, chunk_size=5)
    for name, factors in (("left_colour", slice(0, 3)), ("right_colour", slice(3, 6))):
        agreement = subspace_agreement(learned[name].basis, net.true_subspace(factors))
        assert agreement >= (0.999 if method != "randomized" else 0.95), (method, name, agreement)


def test_methods_give_the_same_metrics(synthetic):
    generator, _, criteria = synthetic
    latents = generator.sample(3, seed=5)
    crits = list(criteria.values())
    exact = estimate_metrics(generator, crits, latents, space="z", method="forward", progress=False)
    reverse = estimate_metrics(generator, crits, latents, space="z", method="reverse", progress=False, chunk_size=64)
    randomized = estimate_metrics(generator, crits, latents, space="z", method="randomized", progress=False, block_size=4)
    for f_exact, f_rev, f_rand in zip(exact.factors, reverse.factors, randomized.factors):
        m = f_exact.T @ f_exact
        assert np.allclose(f_rev.T @ f_rev, m, rtol=1e-6, atol=1e-8 * np.abs(m).max())
        assert np.allclose(f_rand.T @ f_rand, m, rtol=1e-3, atol=1e-4 * np.abs(m).max())
    assert exact.passes["jvp"] == 3 * 12 and exact.passes["vjp"] == 0
    assert reverse.passes["vjp"] == 3 * sum(reverse.output_sizes)


def test_factors_hold_the_mean_metric_in_at_most_d_rows(synthetic):
    """Each batch's Jacobian rows are folded into a factor of at most D rows whose FᵀF is the
    mean JᵀJ over the samples (checked against Jacobians taken one sample at a time)."""
    generator, _, criteria = synthetic
    latents = generator.sample(5, seed=3)
    crits = [criteria["left_in"], criteria["right_out"]]
    estimate = estimate_metrics(generator, crits, latents, space="z", method="forward", batch_size=2, progress=False)
    images_of = LatentImages(generator, "z")
    for criterion, factor in zip(crits, estimate.factors):
        jacobians = []
        for latent in latents:
            with torch.no_grad():
                context = criterion.prepare(images_of(latent[None]))
            jacobians.append(torch.autograd.functional.jacobian(
                lambda u: criterion.outputs(images_of(u[None]), context)[0], latent).double())
        metric = sum(j.T @ j for j in jacobians).numpy() / len(latents)
        assert jacobians[0].shape[0] * 2 > images_of.dim  # a batch alone has more rows than D
        assert factor.shape[0] <= images_of.dim
        assert np.allclose(factor.T @ factor, metric, rtol=1e-5, atol=1e-6 * np.abs(metric).max())


def test_auto_prefers_reverse_for_few_outputs(synthetic):
    generator, _, criteria = synthetic
    landmarks = LandmarkShape(RegionCentroids(), "left")
    estimate = estimate_metrics(generator, [landmarks, criteria["left_in"]], generator.sample(2, seed=0), space="z", progress=False)
    assert estimate.methods == ["reverse", "forward"]


def test_auto_folds_many_reverse_outputs_into_the_shared_forward_pass(synthetic):
    generator, _, criteria = synthetic
    row_means = FunctionCriterion(lambda images: images.mean(dim=(1, 3))[:, :5], name="row means")
    column_means = FunctionCriterion(lambda images: images.mean(dim=(1, 2))[:, :4], name="column means")
    latents = generator.sample(2, seed=0)
    few = estimate_metrics(generator, [column_means, criteria["left_in"]], latents, space="z", progress=False)
    assert few.methods == ["reverse", "forward"]  # 4 reverse outputs ≤ D/2: they stay
    # 4 + 5 reverse outputs > D/2 = 6: the group joins the forward passes
    many = estimate_metrics(generator, [column_means, row_means, criteria["left_in"]], latents, space="z", progress=False)
    assert many.methods == ["forward", "forward", "forward"]
    assert many.passes["vjp"] == 0 and many.passes["jvp"] == 2 * 12
    exact = estimate_metrics(generator, [column_means, row_means], latents, space="z", method="reverse", progress=False)
    for folded, reference in zip(many.factors, exact.factors):
        m = reference.T @ reference
        assert np.allclose(folded.T @ folded, m, rtol=1e-5, atol=1e-6 * np.abs(m).max())  # float32 passes


def test_auto_joins_the_forward_passes_where_a_criterion_s_model_already_runs_there(synthetic):
    generator, _, _ = synthetic
    detector, another = RegionCentroids(), RegionCentroids()
    warped = BlendedPixels(detector, resolution=8)  # 192 outputs > D = 12: forward mode, running detector
    shared = LandmarkShape(detector, "left")  # 2 outputs, but its detector runs in the forward passes anyway
    separate = LandmarkShape(another, "left")  # 2 outputs on a model the forward passes do not run
    latents = generator.sample(2, seed=0)
    estimate = estimate_metrics(generator, [warped, shared, separate], latents, space="z", progress=False)
    assert estimate.methods == ["forward", "forward", "reverse"]
    assert estimate.passes["vjp"] == 2 * 2 and estimate.passes["jvp"] == 2 * 12
    exact = estimate_metrics(generator, [shared, separate], latents, space="z", method="reverse", progress=False)
    for ours, reference in zip(estimate.factors[1:], exact.factors):
        m = reference.T @ reference
        assert np.allclose(ours.T @ ours, m, rtol=1e-5, atol=1e-6 * np.abs(m).max())


def test_the_metrics_bar_moves_within_a_batch_and_ends_on_the_sample_count(synthetic, monkeypatch):
    import tqdm.auto

    generator, _, criteria = synthetic
    positions = []
    real = tqdm.auto.tqdm

    class Recording(real):
        def update(self, n=1):
            result = super().update(n)
            positions.append(self.n)
            return result

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    landmarks = LandmarkShape(RegionCentroids(), "left")  # reverse mode beside the forward passes
    estimate_metrics(generator, [criteria["left_in"], landmarks], generator.sample(4, seed=0), space="z",
                     batch_size=2, chunk_size=3, progress=True)
    within_first = [p for p in positions if 0 < p < 2]
    assert len(within_first) >= 3  # D = 12 tangents in chunks of 3, then 2 cotangents: steps inside the batch
    assert positions == sorted(positions) and positions[-1] == 4
    assert 2 in positions  # a batch ends exactly on its sample count


def test_the_metrics_bar_never_passes_its_total_whatever_the_rounding_of_its_steps():
    """16 faces in batches of 2, 548 tangents in chunks of 16 and three folds: the fractional steps
    once summed to 16.000000000000092 of 16, and tqdm warned (clamping frac) in the cold demo."""
    import io
    import warnings

    from tqdm import TqdmWarning, tqdm

    from cfexplain.jacobian import _BatchProgress

    with warnings.catch_warnings(), tqdm(total=16, file=io.StringIO(), mininterval=0) as bar:
        warnings.simplefilter("error", TqdmWarning)
        for start in range(0, 16, 2):
            advance = _BatchProgress(bar, 2, planned_vectors=548)
            for chunk_start in range(0, 548, 16):
                advance(min(16, 548 - chunk_start))
            for fold in range(3):
                advance.folded((fold + 1) / 3)
            assert bar.n == start + 2


def test_directional_changes_match_the_jacobian_whichever_mode_a_criterion_takes(synthetic, monkeypatch):
    import cfexplain.jacobian as engine

    generator, _, criteria = synthetic
    landmarks = LandmarkShape(RegionCentroids(), "left")  # 2 outputs < 6 directions: reverse mode
    pixels = criteria["left_in"]  # many outputs: forward mode
    latents = generator.sample(3, seed=1)
    directions = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    reversed_criteria = []
    real = engine._reverse_rows
    monkeypatch.setattr(engine, "_reverse_rows", lambda batch, idx, chunk, *rest: reversed_criteria.extend(
        batch.criteria[i].name for i in idx) or real(batch, idx, chunk, *rest))
    changes = directional_changes(generator, [pixels, landmarks], latents, directions, space="z")
    assert set(reversed_criteria) == {landmarks.name}
    images_of = LatentImages(generator, "z")
    for criterion, measured in zip([pixels, landmarks], changes):
        for i in range(3):
            code = latents[i:i + 1].reshape(1, -1)
            context = criterion.prepare(images_of(code))
            jacobian = torch.autograd.functional.jacobian(
                lambda u: criterion.outputs(images_of(u[None]), context)[0], code[0]).double()
            expected = (jacobian @ directions.double()).square().sum(dim=0)
            assert torch.allclose(measured[i], expected, rtol=1e-4, atol=1e-9 * float(expected.max()))


def test_randomized_rank_adapts(synthetic):
    generator, _, criteria = synthetic
    low_rank = criteria["left_in"]  # rank 3 per sample
    estimate = estimate_metrics(generator, [low_rank], generator.sample(1, seed=0), space="z", method="randomized",
                                block_size=2, progress=False)
    assert estimate.factors[0].shape[0] < 12  # stopped before the full dimension
    assert estimate.passes["vjp"] < 12


def test_resume_after_interruption(synthetic, tmp_path, monkeypatch):
    generator, _, criteria = synthetic
    crits = [criteria["left_in"], criteria["left_out"]]
    latents = generator.sample(6, seed=1)
    full = estimate_metrics(generator, crits, latents, space="z", method="forward", batch_size=2, progress=False)
    import cfexplain.jacobian as engine

    calls = {"n": 0}
    real = engine._forward_rows

    def dies_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_forward_rows", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        estimate_metrics(generator, crits, latents, space="z", method="forward", batch_size=2, progress=False, checkpoint_dir=tmp_path)
    assert len(list(tmp_path.glob("metrics-*.pt"))) == 1
    monkeypatch.setattr(engine, "_forward_rows", real)
    counted = {"n": 0}

    def counting(*args, **kwargs):
        counted["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_forward_rows", counting)
    resumed = estimate_metrics(generator, crits, latents, space="z", method="forward", batch_size=2, progress=False, checkpoint_dir=tmp_path)
    assert counted["n"] == 1  # only the missing batch was computed
    for a, b in zip(full.factors, resumed.factors):
        assert np.allclose(a.T @ a, b.T @ b, rtol=1e-9, atol=1e-12)


def test_a_damaged_metrics_checkpoint_is_refused_by_name(synthetic, tmp_path):
    generator, _, criteria = synthetic
    latents = generator.sample(2, seed=1)
    run = dict(space="z", method="forward", batch_size=2, progress=False, checkpoint_dir=tmp_path)
    estimate_metrics(generator, [criteria["left_in"]], latents, **run)
    (saved,) = tmp_path.glob("metrics-*.pt")
    saved.write_bytes(saved.read_bytes()[:100])
    with pytest.raises(CorruptCheckpointError, match=saved.name):
        estimate_metrics(generator, [criteria["left_in"]], latents, **run)


# ------------------------------------------------------------------ results


def test_subspace_set_save_load_roundtrip(synthetic, tmp_path):
    generator, _, criteria = synthetic
    learned = learn_subspaces(generator, semantics(criteria), space="z", n_samples=2, progress=False)
    path = learned.save(tmp_path / "subspaces")
    loaded = SubspaceSet.load(path)
    assert list(loaded) == list(learned) and loaded.space == "z" and loaded.latent_shape == (12,)
    for name in learned:
        assert torch.equal(loaded[name].basis, learned[name].basis)
        assert torch.allclose(loaded[name].eigenvalues, learned[name].eigenvalues)
        assert loaded[name].provenance["target"]["type"] == "RegionPixels"
    assert loaded.provenance["n_samples"] == 2 and loaded.provenance["generator_passes"]["jvp"] > 0
    assert loaded.provenance["cfexplain"] == cfexplain.__version__
    with pytest.raises(CheckpointNotFoundError):
        SubspaceSet.load(tmp_path / "nothing")


def test_subspace_edit_and_project():
    basis, _ = torch.linalg.qr(torch.randn(6, 2, generator=torch.Generator().manual_seed(0)))
    subspace = Subspace("s", basis, torch.tensor([2.0, 1.0]), "w+", (2, 3))
    codes = torch.zeros(4, 2, 3)
    coefficients = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    edited = subspace.edit(codes, coefficients)
    assert edited.shape == codes.shape
    assert torch.allclose(subspace.project(edited - codes), coefficients, atol=1e-6)
    with pytest.raises(ShapeError):
        subspace.edit(codes, torch.zeros(4, 3))
    with pytest.raises(ShapeError):
        Subspace("bad", torch.zeros(5, 2), torch.zeros(2), "w", (6,))


def test_semantic_validation(synthetic):
    _, _, criteria = synthetic
    with pytest.raises(InputError, match="Criterion"):
        Semantic("x", "not a criterion")
    with pytest.raises(InputError, match="keep ratios"):
        Semantic("x", criteria["left_in"], [criteria["left_out"]], keep_ratios=[0.1, 0.1])
    with pytest.raises(InputError, match="solver"):
        Semantic("x", criteria["left_in"], solver="magic")
    with pytest.raises(InputError, match=r"\(0, 1\)"):
        Semantic("x", criteria["left_in"], target_ratio=2.0)


def test_learn_errors(synthetic):
    generator, _, criteria = synthetic
    with pytest.raises(InputError, match="unique"):
        learn_subspaces(generator, semantics(criteria) * 2, space="z", n_samples=1, progress=False)
    with pytest.raises(InputError, match="unknown latent space"):
        learn_subspaces(generator, semantics(criteria), space="s", n_samples=1, progress=False)
    with pytest.raises(InputError, match="method"):
        learn_subspaces(generator, semantics(criteria), space="z", n_samples=1, method="fast", progress=False)


def test_function_criterion_and_stylegan2_spaces():
    """Learning works in every StyleGAN2 space, with early exit, on a small random generator."""
    config = cfexplain.StyleGAN2Config.from_channel_base(16, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2)
    generator = cfexplain.StyleGAN2Generator(config, seed=0)
    top = FunctionCriterion(lambda x: x[:, :, :4].flatten(1), name="top rows")
    rest = FunctionCriterion(lambda x: x[:, :, 4:].flatten(1), name="other rows")
    semantic = Semantic("top", top, [rest], keep_ratios=1e-3)
    for space in ("z", "w", "w+", "s"):
        learned = learn_subspaces(generator, [semantic], space=space, n_samples=2, resolution=8, progress=False)
        subspace = learned["top"]
        assert subspace.basis.shape[0] == generator.latent_dim(space)
        assert torch.allclose(subspace.basis.T @ subspace.basis, torch.eye(subspace.dim), atol=1e-5)


def test_memory_bound_shrinks_the_passes_not_the_result(synthetic, monkeypatch):
    import cfexplain.jacobian as engine

    generator, _, criteria = synthetic
    crits = [criteria["left_in"], criteria["left_out"]]
    latents = generator.sample(2, seed=3)
    chunks = []
    real = engine._forward_rows
    monkeypatch.setattr(engine, "_forward_rows",
                        lambda batch, idx, chunk, advance: chunks.append(chunk) or real(batch, idx, chunk, advance))
    roomy = estimate_metrics(generator, crits, latents, space="z", method="forward", progress=False, chunk_size=12)
    tight = estimate_metrics(generator, crits, latents, space="z", method="forward", progress=False, chunk_size=12,
                             memory_limit_mb=0.05)
    assert chunks[0] == 12 and chunks[1] < 12
    for a, b in zip(roomy.factors, tight.factors):
        assert np.allclose(a.T @ a, b.T @ b, rtol=1e-9, atol=1e-12)


def test_randomized_agrees_on_a_small_stylegan2_in_stylespace():
    config = cfexplain.StyleGAN2Config.from_channel_base(16, channel_base=64, channel_max=16, z_dim=8, w_dim=8, mapping_layers=2)
    generator = cfexplain.StyleGAN2Generator(config, seed=2)
    with torch.no_grad():
        for name, tensor in generator.named_parameters():
            if name.endswith("noise_strength"):
                tensor.fill_(0.1)
    top = FunctionCriterion(lambda x: x[:, :, :6].flatten(1), name="top")
    rest = FunctionCriterion(lambda x: x[:, :, 6:].flatten(1), name="rest")
    semantic = Semantic("top", top, [rest], keep_ratios=1e-3, target_ratio=1e-2)
    exact = learn_subspaces(generator, [semantic], space="s", n_samples=2, method="forward", progress=False)
    fast = learn_subspaces(generator, [semantic], space="s", n_samples=2, method="randomized", block_size=8, progress=False)
    assert generator.latent_dim("s") == 80 and exact["top"].dim >= 1
    assert subspace_agreement(fast["top"].basis, exact["top"].basis) >= 0.95


def test_engine_with_batches_the_size_of_other_context_tensors():
    """A context tensor whose first dimension happens to equal the batch size (the four image
    corners of blended pixels, with a batch of 4) must not be mistaken for per-sample data."""
    from cfexplain.criteria import BlendedPixels
    from synthetic import RegionCentroids

    generator, _ = region_generator(dim=12, seed=0)
    estimate = estimate_metrics(generator, [BlendedPixels(RegionCentroids(), resolution=8)], generator.sample(4, seed=0),
                                space="z", batch_size=4, progress=False)
    assert estimate.factors[0].shape[1] == 12
